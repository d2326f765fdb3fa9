package squall.runtime;

import com.amazonaws.services.lambda.runtime.LambdaLogger;
import com.amazonaws.services.lambda.runtime.logging.LogFormat;
import com.amazonaws.services.lambda.runtime.logging.LogLevel;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * The LambdaLogger of Context.getLogger() and LambdaRuntime.getLogger(): writes to stdout
 * (System.out, so it keeps its order with the function's own prints), one message a line.
 * Text format: the message, "[LEVEL] message" with a level. JSON format
 * (AWS_LAMBDA_LOG_FORMAT=JSON): {"timestamp","message","level","AWSRequestId"}.
 * AWS_LAMBDA_LOG_LEVEL drops messages below it (messages without a level always pass).
 */
public final class RuntimeLogger implements LambdaLogger {
    public static final RuntimeLogger INSTANCE = new RuntimeLogger();

    private final LogFormat format = LogFormat.fromString(System.getenv("AWS_LAMBDA_LOG_FORMAT"));
    private final LogLevel minimum = LogLevel.fromString(System.getenv("AWS_LAMBDA_LOG_LEVEL"));
    static volatile String requestId;

    private RuntimeLogger() {
    }

    boolean json() {
        return format == LogFormat.JSON;
    }

    private boolean enabled(LogLevel level) {
        return level == null || level == LogLevel.UNDEFINED || level.ordinal() >= minimum.ordinal();
    }

    @Override
    public void log(String message) {
        log(message, LogLevel.UNDEFINED);
    }

    @Override
    public void log(byte[] message) {
        log(message, LogLevel.UNDEFINED);
    }

    @Override
    public void log(String message, LogLevel level) {
        if (!enabled(level)) {
            return;
        }
        String text = message == null ? "null" : message;
        if (format == LogFormat.JSON) {
            text = jsonLine(text, level);
        } else if (level != null && level != LogLevel.UNDEFINED) {
            text = "[" + level.name() + "] " + text;
        }
        emit(text.getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public void log(byte[] message, LogLevel level) {
        if (enabled(level)) {
            emit(message == null ? "null".getBytes(StandardCharsets.UTF_8) : message);
        }
    }

    private static String jsonLine(String message, LogLevel level) {
        StringBuilder sb = new StringBuilder("{\"timestamp\":\"").append(java.time.Instant.now().truncatedTo(
                java.time.temporal.ChronoUnit.MILLIS)).append("\",\"message\":").append(Json.write(message))
                .append(",\"level\":\"").append(level == null ? LogLevel.UNDEFINED.name() : level.name()).append('"');
        String id = requestId;
        if (id != null) {
            sb.append(",\"AWSRequestId\":").append(Json.write(id));
        }
        return sb.append('}').toString();
    }

    /** One write of the message and, if it lacks one, a newline. */
    private static void emit(byte[] bytes) {
        PrintStream out = System.out;
        int len = bytes.length;
        if (len == 0 || bytes[len - 1] != '\n') {
            byte[] line = new byte[len + 1];
            System.arraycopy(bytes, 0, line, 0, len);
            line[len] = '\n';
            bytes = line;
        }
        out.write(bytes, 0, bytes.length);
        out.flush();
    }
}
