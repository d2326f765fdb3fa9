package squall.runtime;

import java.lang.reflect.Type;
import java.nio.charset.StandardCharsets;

/**
 * The runtime's JSON codec (no dependencies): events are read into the handler's declared
 * type and results written back, following the Lambda Java runtime's Jackson configuration.
 * See {@link JsonReader} and {@link JsonWriter} for the rules.
 */
public final class Json {
    private Json() {
    }

    /** JSON text as Map / List / String / Integer / Long / BigInteger / Double / Boolean / null. */
    public static Object parse(String text) {
        return JsonReader.read(text, Object.class);
    }

    /** JSON text read into {@code type} (a Class or a generic type). */
    public static Object read(String text, Type type) {
        return JsonReader.read(text, type);
    }

    /** UTF-8 JSON read into {@code type}. */
    public static Object read(byte[] utf8, Type type) {
        return JsonReader.read(new String(utf8, StandardCharsets.UTF_8), type);
    }

    public static String write(Object value) {
        return JsonWriter.write(value);
    }

    public static byte[] writeBytes(Object value) {
        return JsonWriter.write(value).getBytes(StandardCharsets.UTF_8);
    }
}
