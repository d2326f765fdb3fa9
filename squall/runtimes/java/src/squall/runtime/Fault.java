package squall.runtime;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;

/**
 * A problem with the function's code found by the runtime (handler class or method not
 * usable, constructor failed), reported as the Lambda Java runtime reports a "user fault".
 * Also the helpers that shape an exception for the log and for the Runtime API.
 */
final class Fault extends Exception {
    private static final long serialVersionUID = 1L;
    private static final String OWN_PACKAGE = "squall.runtime.";

    final String msg;
    final String type; // may be null
    final String trace; // may be null

    private Fault(String msg, String type, String trace) {
        super(msg, null, false, false);
        this.msg = msg;
        this.type = type;
        this.trace = trace;
    }

    static Fault message(String msg) {
        return new Fault(msg, null, null);
    }

    static Fault of(String msg, Throwable t) {
        return new Fault(msg, t.getClass().getName(), trace(t));
    }

    static Fault of(Throwable t) {
        return new Fault(message(t), t.getClass().getName(), trace(t));
    }

    /** The text logged for the fault: "message: type\ntrace" (or the message alone). */
    String reportable() {
        if (type == null && trace == null) {
            return msg;
        }
        return msg + ": " + (type == null ? "" : type) + "\n" + (trace == null ? "" : trace);
    }

    /** The init error document: no stack trace, as the Lambda Java runtime sends it. */
    byte[] json() {
        StringBuilder sb = new StringBuilder("{\"errorMessage\":").append(Json.write(msg));
        if (type != null) {
            sb.append(",\"errorType\":").append(Json.write(type));
        }
        return sb.append('}').toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    // ---- exceptions -------------------------------------------------------------------

    static String message(Throwable t) {
        String m = t.getLocalizedMessage();
        return m == null ? t.getClass().getName() : m;
    }

    /** The stack trace as printed, after {@link #filter}. */
    static String trace(Throwable t) {
        filter(t);
        StringWriter sw = new StringWriter();
        t.printStackTrace(new PrintWriter(sw));
        return sw.toString();
    }

    /** Cut the runtime's own frames (and all below them) from t, its causes and suppressed. */
    static Throwable filter(Throwable t) {
        filter(t, Collections.newSetFromMap(new IdentityHashMap<Throwable, Boolean>()));
        return t;
    }

    private static void filter(Throwable t, Set<Throwable> seen) {
        if (t == null || !seen.add(t)) {
            return;
        }
        StackTraceElement[] frames = t.getStackTrace();
        for (int i = 0; i < frames.length; i++) {
            if (frames[i].getClassName().startsWith(OWN_PACKAGE)) {
                StackTraceElement[] kept = new StackTraceElement[i];
                System.arraycopy(frames, 0, kept, 0, i);
                t.setStackTrace(kept);
                break;
            }
        }
        filter(t.getCause(), seen);
        for (Throwable s : t.getSuppressed()) {
            filter(s, seen);
        }
    }

    /** The /invocation/{id}/error document: {"errorMessage","errorType","stackTrace":[...]}. */
    static byte[] errorJson(Throwable t) {
        StringBuilder sb = new StringBuilder("{\"errorMessage\":").append(Json.write(message(t)))
                .append(",\"errorType\":").append(Json.write(t.getClass().getName()))
                .append(",\"stackTrace\":[");
        StackTraceElement[] frames = t.getStackTrace();
        for (int i = 0; i < frames.length; i++) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append(Json.write(frames[i].toString()));
        }
        return sb.append("]}").toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }
}
