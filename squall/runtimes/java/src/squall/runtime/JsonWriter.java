package squall.runtime;

import java.lang.reflect.Array;
import java.math.BigDecimal;
import java.util.Base64;
import java.util.Iterator;
import java.util.Map;
import java.util.Optional;

/**
 * Writes a Java value as JSON the way the Lambda Java runtime's Jackson setup does: POJO
 * properties from getters and public fields, null properties left out, Map entries kept
 * (nulls too), enums by name, byte[] as Base64, NaN and infinities as strings, non-ASCII
 * characters as they are.
 */
final class JsonWriter {
    private static final int MAX_DEPTH = 1000;
    private static final char[] HEX = "0123456789ABCDEF".toCharArray();

    private final StringBuilder sb = new StringBuilder(256);

    static String write(Object value) {
        JsonWriter w = new JsonWriter();
        w.value(value, 0);
        return w.sb.toString();
    }

    void raw(String text) {
        sb.append(text);
    }

    void string(String text) {
        sb.append('"');
        int start = 0;
        int len = text.length();
        for (int i = 0; i < len; i++) {
            char c = text.charAt(i);
            if (c >= 0x20 && c != '"' && c != '\\') {
                continue;
            }
            sb.append(text, start, i);
            start = i + 1;
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\b': sb.append("\\b"); break;
                case '\t': sb.append("\\t"); break;
                case '\n': sb.append("\\n"); break;
                case '\f': sb.append("\\f"); break;
                case '\r': sb.append("\\r"); break;
                default:
                    sb.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xF]);
            }
        }
        sb.append(text, start, len).append('"');
    }

    private void value(Object v, int depth) {
        if (depth > MAX_DEPTH) {
            throw new JsonException("Direct self-reference leading to cycle, or nesting deeper than " + MAX_DEPTH);
        }
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String) {
            string((String) v);
        } else if (v instanceof Boolean) {
            sb.append(((Boolean) v).booleanValue() ? "true" : "false");
        } else if (v instanceof Number) {
            number((Number) v);
        } else if (v instanceof Map) {
            map((Map<?, ?>) v, depth);
        } else if (v instanceof java.nio.file.Path) {
            string(((java.nio.file.Path) v).toUri().toString());
        } else if (v instanceof Iterable) {
            iterator(((Iterable<?>) v).iterator(), depth);
        } else if (v instanceof CharSequence || v instanceof Character) {
            string(v.toString());
        } else if (v.getClass().isArray()) {
            array(v, depth);
        } else if (v instanceof Enum) {
            string(((Enum<?>) v).name());
        } else if (v instanceof Optional) {
            Optional<?> o = (Optional<?>) v;
            value(o.isPresent() ? o.get() : null, depth + 1);
        } else if (v instanceof Iterator) {
            iterator((Iterator<?>) v, depth);
        } else if (!special(v)) {
            bean(v, depth);
        }
    }

    private boolean special(Object v) {
        String cn = v.getClass().getName();
        if (v instanceof java.util.Date || v instanceof java.util.Calendar || cn.startsWith("java.time.")) {
            return TimeCodec.write(this, v);
        }
        if (v instanceof java.util.UUID || v instanceof java.net.URI || v instanceof java.net.URL
                || v instanceof java.util.Locale || v instanceof java.util.Currency || v instanceof java.nio.charset.Charset
                || v instanceof java.util.regex.Pattern) {
            string(v.toString());
        } else if (v instanceof java.io.File) {
            string(((java.io.File) v).getAbsolutePath());
        } else if (v instanceof Class) {
            string(((Class<?>) v).getName());
        } else if (v instanceof java.util.TimeZone) {
            string(((java.util.TimeZone) v).getID());
        } else if (v instanceof java.util.concurrent.atomic.AtomicBoolean) {
            sb.append(((java.util.concurrent.atomic.AtomicBoolean) v).get() ? "true" : "false");
        } else if (v instanceof java.util.OptionalInt) {
            java.util.OptionalInt o = (java.util.OptionalInt) v;
            sb.append(o.isPresent() ? Integer.toString(o.getAsInt()) : "null");
        } else if (v instanceof java.util.OptionalLong) {
            java.util.OptionalLong o = (java.util.OptionalLong) v;
            sb.append(o.isPresent() ? Long.toString(o.getAsLong()) : "null");
        } else if (v instanceof java.util.OptionalDouble) {
            java.util.OptionalDouble o = (java.util.OptionalDouble) v;
            if (o.isPresent()) {
                number(Double.valueOf(o.getAsDouble()));
            } else {
                sb.append("null");
            }
        } else {
            return false;
        }
        return true;
    }

    private void number(Number n) {
        if (n instanceof Double || n instanceof Float) {
            double d = n.doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                string(n.toString()); // WRITE_NAN_AS_STRINGS
            } else {
                sb.append(n.toString());
            }
        } else if (n instanceof BigDecimal) {
            sb.append(n.toString());
        } else {
            sb.append(n.toString());
        }
    }

    private void map(Map<?, ?> m, int depth) {
        sb.append('{');
        boolean first = true;
        for (Map.Entry<?, ?> e : m.entrySet()) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            Object k = e.getKey();
            string(k instanceof Enum ? ((Enum<?>) k).name() : String.valueOf(k));
            sb.append(':');
            value(e.getValue(), depth + 1);
        }
        sb.append('}');
    }

    private void iterator(Iterator<?> it, int depth) {
        sb.append('[');
        boolean first = true;
        while (it.hasNext()) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            value(it.next(), depth + 1);
        }
        sb.append(']');
    }

    private void array(Object a, int depth) {
        if (a instanceof byte[]) {
            string(Base64.getEncoder().encodeToString((byte[]) a));
            return;
        }
        if (a instanceof char[]) {
            string(new String((char[]) a));
            return;
        }
        sb.append('[');
        int len = Array.getLength(a);
        for (int i = 0; i < len; i++) {
            if (i > 0) {
                sb.append(',');
            }
            value(Array.get(a, i), depth + 1);
        }
        sb.append(']');
    }

    private void bean(Object v, int depth) {
        Beans.Getter[] getters = Beans.getters(v.getClass());
        sb.append('{');
        boolean first = true;
        for (Beans.Getter g : getters) {
            Object pv;
            try {
                pv = g.get(v);
            } catch (Exception e) {
                throw new JsonException("Cannot read property \"" + g.name + "\" of `" + v.getClass().getName() + "`", e);
            }
            if (pv == null) {
                continue; // Include.NON_NULL
            }
            if (pv == v) {
                throw new JsonException("Direct self-reference leading to cycle (through \"" + g.name + "\" of `"
                        + v.getClass().getName() + "`)");
            }
            if (!first) {
                sb.append(',');
            }
            first = false;
            string(g.name);
            sb.append(':');
            value(pv, depth + 1);
        }
        sb.append('}');
    }
}
