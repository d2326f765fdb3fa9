package squall.runtime;

import com.amazonaws.services.lambda.runtime.logging.LogLevel;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOError;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Squall's Java runtime: loads the handler named by _HANDLER from $LAMBDA_TASK_ROOT (classes
 * at its root, jars in lib/, layers' jars in /opt/java/lib), then serves invocations from the
 * Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API until the process is stopped.
 *
 * A handler that cannot be loaded is reported to /runtime/init/error and the process exits.
 * An exception from the handler is logged ("message: type" and the stack trace), then posted
 * as {"errorMessage","errorType","stackTrace"}; a VirtualMachineError or IOError also ends
 * the process. stdout and stderr are UTF-8 and flushed before each answer.
 */
public final class Bootstrap {
    private static final String TRACE_PROPERTY = "com.amazonaws.xray.traceHeader";
    private static final String INIT_ERROR_TYPE = "Runtime.BadFunctionCode";
    private static final String USER_ERROR_TYPE = "Runtime.UserException";
    private static final int KEEP_BUFFER = 1 << 20;

    private static PrintStream stdout;
    private static PrintStream stderr;

    private Bootstrap() {
    }

    /** A growable buffer whose bytes can be sent without a copy. */
    static final class Buffer extends ByteArrayOutputStream {
        Buffer() {
            super(8192);
        }

        byte[] array() {
            return buf;
        }
    }

    public static void main(String[] args) {
        stdout = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 8192), true,
                StandardCharsets.UTF_8);
        stderr = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.err), 8192), true,
                StandardCharsets.UTF_8);
        System.setOut(stdout);
        System.setErr(stderr);
        Runtime.getRuntime().addShutdownHook(new Thread(new Runnable() {
            @Override
            public void run() {
                flush();
            }
        }, "squall-flush"));

        String api = System.getenv("AWS_LAMBDA_RUNTIME_API");
        if (api == null || api.isEmpty()) {
            stderr.println("squall java runtime: AWS_LAMBDA_RUNTIME_API is not set");
            System.exit(1);
        }
        String handler = args.length > 0 ? args[0] : System.getenv("_HANDLER");
        RuntimeClient client = new RuntimeClient(api);
        client.preconnect();

        HandlerLoader.Invoker invoker;
        try {
            ClassLoader loader = customerLoader();
            Thread.currentThread().setContextClassLoader(loader);
            invoker = HandlerLoader.load(handler == null ? "" : handler.trim(), loader);
        } catch (Fault fault) {
            logError(fault.reportable());
            try {
                client.postInitError(INIT_ERROR_TYPE, fault.json());
            } catch (IOException e) {
                stderr.println("squall java runtime: cannot report the init error: " + e);
            }
            flush();
            System.exit(1);
            return;
        } catch (IOException e) {
            stderr.println("squall java runtime: " + e);
            flush();
            System.exit(1);
            return;
        }
        try {
            loop(client, invoker);
        } catch (IOException e) {
            stderr.println("squall java runtime: lost the Runtime API: " + e);
            flush();
            System.exit(1);
        }
    }

    /** The task root, its lib/*.jar and /opt/java/lib/*.jar (each sorted), over the runtime's classes. */
    static ClassLoader customerLoader() throws IOException {
        String root = System.getenv("LAMBDA_TASK_ROOT");
        if (root == null || root.isEmpty()) {
            root = System.getProperty("user.dir");
        }
        List<URL> urls = new ArrayList<URL>();
        File rootDir = new File(root);
        urls.add(new URL("file", null, -1, rootDir.getAbsolutePath() + "/"));
        addJars(new File(rootDir, "lib"), urls);
        addJars(new File("/opt/java/lib"), urls);
        return new URLClassLoader(urls.toArray(new URL[0]), Bootstrap.class.getClassLoader());
    }

    private static void addJars(File dir, List<URL> urls) throws IOException {
        String[] names = dir.list();
        if (names == null) {
            return;
        }
        Arrays.sort(names);
        for (String name : names) {
            if (name.endsWith(".jar")) {
                urls.add(new URL("file", null, -1, dir.getAbsolutePath() + "/" + name));
            }
        }
    }

    static void flush() {
        PrintStream out = System.out;
        PrintStream err = System.err;
        out.flush();
        err.flush();
        if (out != stdout) {
            stdout.flush();
        }
        if (err != stderr) {
            stderr.flush();
        }
    }

    private static void logError(String text) {
        int end = text.length();
        while (end > 0 && (text.charAt(end - 1) == '\n' || text.charAt(end - 1) == '\r')) {
            end--;
        }
        RuntimeLogger logger = RuntimeLogger.INSTANCE;
        logger.log(text.substring(0, end), logger.json() ? LogLevel.ERROR : LogLevel.UNDEFINED);
    }

    private static long parseLong(String s, long otherwise) {
        try {
            return s == null ? otherwise : Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            return otherwise;
        }
    }

    private static void loop(RuntimeClient client, HandlerLoader.Invoker invoker) throws IOException {
        Buffer out = new Buffer();
        while (true) {
            RuntimeClient.Response next = client.next();
            if (next.status != 200) {
                throw new IOException("/invocation/next answered " + next.status + ": "
                        + new String(next.body, StandardCharsets.UTF_8));
            }
            String id = next.header("lambda-runtime-aws-request-id");
            String trace = next.header("lambda-runtime-trace-id");
            if (trace != null) {
                System.setProperty(TRACE_PROPERTY, trace);
            } else {
                System.clearProperty(TRACE_PROPERTY);
            }
            RuntimeLogger.requestId = id;
            InvocationContext context = new InvocationContext(id,
                    parseLong(next.header("lambda-runtime-deadline-ms"), System.currentTimeMillis() + 900_000L),
                    next.header("lambda-runtime-invoked-function-arn"), trace,
                    next.header("lambda-runtime-cognito-identity"), next.header("lambda-runtime-client-context"));
            if (out.array().length > KEEP_BUFFER) {
                out = new Buffer();
            }
            out.reset();
            Throwable failure = null;
            try {
                invoker.invoke(next.body, out, context);
            } catch (Throwable t) {
                failure = t;
            }
            Thread.interrupted(); // a flag the handler left set must not break the next /next
            if (failure == null) {
                flush();
                client.postResponse(id, out.array(), out.size());
                continue;
            }
            byte[] document;
            try {
                Fault.filter(failure);
                logError(Fault.message(failure) + ": " + failure.getClass().getName() + "\n" + Fault.trace(failure));
                document = Fault.errorJson(failure);
            } catch (Throwable t) { // e.g. a toString() that throws
                document = ("{\"errorMessage\":" + Json.write(failure.getClass().getName()) + ",\"errorType\":"
                        + Json.write(failure.getClass().getName()) + ",\"stackTrace\":[]}").getBytes(StandardCharsets.UTF_8);
            }
            flush();
            client.postError(id, USER_ERROR_TYPE, document);
            if (failure instanceof VirtualMachineError || failure instanceof IOError) {
                System.exit(1);
            }
        }
    }
}
