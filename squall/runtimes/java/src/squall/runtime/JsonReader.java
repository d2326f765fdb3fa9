package squall.runtime;

import java.lang.reflect.Array;
import java.lang.reflect.Constructor;
import java.lang.reflect.Modifier;
import java.lang.reflect.Type;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import java.util.SortedMap;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * Reads JSON text straight into a requested Java type, with the leniency of the Lambda Java
 * runtime's Jackson setup: single quotes, unquoted names, NaN/Infinity, leading zeros, any
 * escaped character, control characters in strings; unknown properties are ignored; a single
 * value is accepted where an array is expected and a one-element array where a single value
 * is; "" and [] read as null for objects; scalars coerce between strings and numbers.
 *
 * For {@code Object}: LinkedHashMap, ArrayList, String, Integer / Long / BigInteger, Double,
 * Boolean, null.
 */
final class JsonReader {
    private final String s;
    private final int n;
    private int pos;

    private JsonReader(String s) {
        this.s = s;
        this.n = s.length();
    }

    static Object read(String text, Type type) {
        JsonReader r = new JsonReader(text);
        if (r.n > 0 && r.s.charAt(0) == '\uFEFF') {
            r.pos = 1;
        }
        r.ws();
        if (r.pos >= r.n) {
            return r.nullFor(Types.raw(type));
        }
        return r.value(type);
    }

    // ---- tokens -----------------------------------------------------------------------

    private JsonException error(String message) {
        int line = 1;
        int col = 1;
        for (int i = 0; i < pos && i < n; i++) {
            if (s.charAt(i) == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return new JsonException(message + " (line " + line + ", column " + col + ")");
    }

    private void ws() {
        while (pos < n) {
            char c = s.charAt(pos);
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                pos++;
            } else {
                break;
            }
        }
    }

    private char peek() {
        ws();
        if (pos >= n) {
            throw error("Unexpected end-of-input");
        }
        return s.charAt(pos);
    }

    private void expect(char c) {
        if (peek() != c) {
            throw error("Expected '" + c + "' but found " + describe());
        }
        pos++;
    }

    private String describe() {
        if (pos >= n) {
            return "end-of-input";
        }
        return "'" + s.charAt(pos) + "'";
    }

    private boolean literal(String word) {
        if (s.startsWith(word, pos)) {
            int end = pos + word.length();
            if (end >= n || !Character.isJavaIdentifierPart(s.charAt(end))) {
                pos = end;
                return true;
            }
        }
        return false;
    }

    private String string() {
        char quote = s.charAt(pos++);
        StringBuilder sb = null;
        int start = pos;
        while (true) {
            if (pos >= n) {
                throw error("Unexpected end-of-input in a string");
            }
            char c = s.charAt(pos);
            if (c == quote) {
                String result = sb == null ? s.substring(start, pos) : sb.append(s, start, pos).toString();
                pos++;
                return result;
            }
            if (c == '\\') {
                if (sb == null) {
                    sb = new StringBuilder();
                }
                sb.append(s, start, pos);
                if (pos + 1 >= n) {
                    throw error("Unexpected end-of-input in a string");
                }
                char e = s.charAt(pos + 1);
                pos += 2;
                switch (e) {
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    case 't': sb.append('\t'); break;
                    case 'u':
                        if (pos + 4 > n) {
                            throw error("Unexpected end-of-input in a \\u escape");
                        }
                        int code = 0;
                        for (int i = 0; i < 4; i++) {
                            int d = Character.digit(s.charAt(pos + i), 16);
                            if (d < 0) {
                                throw error("Invalid \\u escape");
                            }
                            code = code * 16 + d;
                        }
                        sb.append((char) code);
                        pos += 4;
                        break;
                    default: sb.append(e);
                }
                start = pos;
            } else {
                pos++;
            }
        }
    }

    private String name() {
        char c = peek();
        if (c == '"' || c == '\'') {
            return string();
        }
        int start = pos;
        while (pos < n && Character.isJavaIdentifierPart(s.charAt(pos))) {
            pos++;
        }
        if (pos == start) {
            throw error("Expected a field name but found " + describe());
        }
        return s.substring(start, pos);
    }

    /** The text of a number at pos (validated), or null when there is none. */
    private String numberText() {
        int start = pos;
        if (pos < n && s.charAt(pos) == '-') {
            pos++;
        }
        if (literal("NaN") || literal("Infinity")) {
            return s.substring(start, pos);
        }
        int digits = pos;
        while (pos < n && isDigit(s.charAt(pos))) {
            pos++;
        }
        if (pos == digits) {
            pos = start;
            return null;
        }
        if (pos < n && s.charAt(pos) == '.') {
            pos++;
            int frac = pos;
            while (pos < n && isDigit(s.charAt(pos))) {
                pos++;
            }
            if (pos == frac) {
                throw error("Decimal point not followed by a digit");
            }
        }
        if (pos < n && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
            pos++;
            if (pos < n && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) {
                pos++;
            }
            int exp = pos;
            while (pos < n && isDigit(s.charAt(pos))) {
                pos++;
            }
            if (pos == exp) {
                throw error("Exponent not followed by a digit");
            }
        }
        return s.substring(start, pos);
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private static boolean integral(String num) {
        for (int i = 0; i < num.length(); i++) {
            char c = num.charAt(i);
            if (c == '.' || c == 'e' || c == 'E' || c == 'N' || c == 'I') {
                return false;
            }
        }
        return true;
    }

    /** A number as Jackson gives it for Object: Integer, Long, BigInteger or Double. */
    static Number naturalNumber(String num) {
        if (integral(num)) {
            int len = num.length() - (num.charAt(0) == '-' ? 1 : 0);
            if (len <= 9) {
                return Integer.valueOf(Integer.parseInt(num));
            }
            if (len <= 18) {
                long v = Long.parseLong(num);
                if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
                    return Integer.valueOf((int) v);
                }
                return Long.valueOf(v);
            }
            BigInteger big = new BigInteger(num);
            if (big.bitLength() < 32) {
                return Integer.valueOf(big.intValue());
            }
            if (big.bitLength() < 64) {
                return Long.valueOf(big.longValue());
            }
            return big;
        }
        return Double.valueOf(Double.parseDouble(num));
    }

    // ---- untyped ----------------------------------------------------------------------

    Object natural() {
        char c = peek();
        switch (c) {
            case '{': {
                pos++;
                Map<String, Object> map = new LinkedHashMap<String, Object>();
                if (peek() == '}') {
                    pos++;
                    return map;
                }
                while (true) {
                    String key = name();
                    expect(':');
                    map.put(key, natural());
                    char d = peek();
                    pos++;
                    if (d == '}') {
                        return map;
                    }
                    if (d != ',') {
                        pos--;
                        throw error("Expected ',' or '}' but found " + describe());
                    }
                }
            }
            case '[': {
                pos++;
                List<Object> list = new ArrayList<Object>();
                if (peek() == ']') {
                    pos++;
                    return list;
                }
                while (true) {
                    list.add(natural());
                    char d = peek();
                    pos++;
                    if (d == ']') {
                        return list;
                    }
                    if (d != ',') {
                        pos--;
                        throw error("Expected ',' or ']' but found " + describe());
                    }
                }
            }
            case '"':
            case '\'':
                return string();
            default:
                if (literal("true")) {
                    return Boolean.TRUE;
                }
                if (literal("false")) {
                    return Boolean.FALSE;
                }
                if (literal("null")) {
                    return null;
                }
                String num = numberText();
                if (num == null) {
                    throw error("Unexpected character " + describe());
                }
                return naturalNumber(num);
        }
    }

    // ---- typed ------------------------------------------------------------------------

    private Object nullFor(Class<?> c) {
        if (c.isPrimitive()) {
            if (c == boolean.class) {
                return Boolean.FALSE;
            }
            if (c == char.class) {
                return Character.valueOf('\0');
            }
            return convertNumber("0", c);
        }
        if (c == Optional.class) {
            return Optional.empty();
        }
        return null;
    }

    Object value(Type type) {
        Class<?> c = Types.raw(type);
        char ch = peek();
        if (ch == 'n' && literal("null")) {
            return nullFor(c);
        }
        if (c == Object.class || c == java.io.Serializable.class || c == Comparable.class) {
            return natural();
        }
        if (c == String.class || c == CharSequence.class) {
            return scalarText(c);
        }
        if (c.isPrimitive() || Number.class.isAssignableFrom(c) || c == Boolean.class || c == Character.class) {
            return scalar(c);
        }
        if (c.isEnum()) {
            return enumValue(c);
        }
        if (c.isArray()) {
            return array(type, c);
        }
        if (Collection.class.isAssignableFrom(c) || c == Iterable.class) {
            return collection(type, c);
        }
        if (Map.class.isAssignableFrom(c)) {
            return map(type, c);
        }
        if (c == Optional.class) {
            return Optional.ofNullable(value(Types.arg(type, 0)));
        }
        String cn = c.getName();
        if (cn.startsWith("java.time.") || c == java.util.Date.class) {
            return TimeCodec.read(this, c);
        }
        if (c == UUID.class) {
            String text = (String) scalarText(String.class);
            return text == null || text.isEmpty() ? null : UUID.fromString(text);
        }
        if (c == java.net.URI.class) {
            String text = (String) scalarText(String.class);
            return text == null ? null : java.net.URI.create(text);
        }
        return bean(type, c);
    }

    /** For the time codec: the next value as a String or Number (or null). */
    Object scalarToken() {
        char ch = peek();
        if (ch == '"' || ch == '\'') {
            return string();
        }
        return natural();
    }

    private Object unwrapSingle(Type type) {
        pos++; // '['
        if (peek() == ']') {
            pos++;
            return nullFor(Types.raw(type));
        }
        Object v = value(type);
        if (peek() != ']') {
            throw error("Attempted to unwrap '" + Types.name(type) + "' value from an array with more than one value");
        }
        pos++;
        return v;
    }

    private Object scalarText(Class<?> c) {
        char ch = peek();
        if (ch == '"' || ch == '\'') {
            return string();
        }
        if (ch == '[') {
            return unwrapSingle(c);
        }
        if (ch == '{') {
            throw error("Cannot deserialize value of type `java.lang.String` from Object value (token `JsonToken.START_OBJECT`)");
        }
        if (literal("true")) {
            return "true";
        }
        if (literal("false")) {
            return "false";
        }
        String num = numberText();
        if (num == null) {
            throw error("Unexpected character " + describe());
        }
        return num;
    }

    private Object scalar(Class<?> c) {
        char ch = peek();
        if (ch == '[') {
            return unwrapSingle(c);
        }
        if (ch == '{') {
            throw error("Cannot deserialize value of type `" + c.getName() + "` from Object value (token `JsonToken.START_OBJECT`)");
        }
        if (c == boolean.class || c == Boolean.class) {
            if (literal("true")) {
                return Boolean.TRUE;
            }
            if (literal("false")) {
                return Boolean.FALSE;
            }
            if (ch == '"' || ch == '\'') {
                String text = string().trim();
                if (text.isEmpty()) {
                    return nullFor(c);
                }
                if (text.equalsIgnoreCase("true")) {
                    return Boolean.TRUE;
                }
                if (text.equalsIgnoreCase("false")) {
                    return Boolean.FALSE;
                }
                throw error("Cannot deserialize value of type `" + c.getName() + "` from String \"" + text + "\"");
            }
            String num = numberText();
            if (num == null) {
                throw error("Unexpected character " + describe());
            }
            return Boolean.valueOf(new BigDecimal(num).signum() != 0);
        }
        if (c == char.class || c == Character.class) {
            if (ch == '"' || ch == '\'') {
                String text = string();
                if (text.isEmpty()) {
                    return nullFor(c);
                }
                if (text.length() != 1) {
                    throw error("Cannot deserialize value of type `" + c.getName() + "` from String \"" + text
                            + "\": expected a single character");
                }
                return Character.valueOf(text.charAt(0));
            }
            String num = numberText();
            if (num == null) {
                throw error("Unexpected character " + describe());
            }
            return Character.valueOf((char) Integer.parseInt(num));
        }
        String text;
        if (ch == '"' || ch == '\'') {
            text = string().trim();
            if (text.isEmpty()) {
                return nullFor(c);
            }
        } else {
            if (literal("true") || literal("false")) {
                throw error("Cannot coerce boolean to `" + c.getName() + "`");
            }
            text = numberText();
            if (text == null) {
                throw error("Unexpected character " + describe());
            }
        }
        try {
            return convertNumber(text, c);
        } catch (NumberFormatException e) {
            throw error("Cannot deserialize value of type `" + c.getName() + "` from \"" + text + "\": not a valid number");
        } catch (ArithmeticException e) {
            throw error("Numeric value (" + text + ") out of range of " + c.getName());
        }
    }

    private static Object convertNumber(String text, Class<?> c) {
        if (c == double.class || c == Double.class) {
            return Double.valueOf(Double.parseDouble(text));
        }
        if (c == float.class || c == Float.class) {
            return Float.valueOf(Float.parseFloat(text));
        }
        if (c == Number.class) {
            return naturalNumber(text);
        }
        if (c == BigDecimal.class) {
            return new BigDecimal(text);
        }
        BigDecimal d = new BigDecimal(text);
        if (c == BigInteger.class) {
            return d.toBigInteger();
        }
        BigInteger whole = d.toBigInteger(); // floats are truncated, as Jackson does by default
        if (c == int.class || c == Integer.class) {
            return Integer.valueOf(whole.intValueExact());
        }
        if (c == long.class || c == Long.class) {
            return Long.valueOf(whole.longValueExact());
        }
        if (c == short.class || c == Short.class) {
            return Short.valueOf(whole.shortValueExact());
        }
        if (c == byte.class || c == Byte.class) {
            int v = whole.intValueExact();
            if (v < Byte.MIN_VALUE || v > 255) {
                throw new ArithmeticException("out of range");
            }
            return Byte.valueOf((byte) v);
        }
        if (c == java.util.concurrent.atomic.AtomicInteger.class) {
            return new java.util.concurrent.atomic.AtomicInteger(whole.intValueExact());
        }
        if (c == java.util.concurrent.atomic.AtomicLong.class) {
            return new java.util.concurrent.atomic.AtomicLong(whole.longValueExact());
        }
        throw new NumberFormatException("unsupported number type " + c.getName());
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Object enumValue(Class<?> c) {
        char ch = peek();
        if (ch == '[') {
            return unwrapSingle(c);
        }
        Object[] constants = c.getEnumConstants();
        if (ch == '"' || ch == '\'') {
            String text = string();
            if (text.isEmpty()) {
                return null;
            }
            for (Object k : constants) {
                if (((Enum) k).name().equals(text)) {
                    return k;
                }
            }
            return null; // READ_UNKNOWN_ENUM_VALUES_AS_NULL
        }
        String num = numberText();
        if (num == null || !integral(num)) {
            throw error("Cannot deserialize value of type `" + c.getName() + "` from " + describe());
        }
        int index = Integer.parseInt(num);
        return index >= 0 && index < constants.length ? constants[index] : null;
    }

    private List<Object> elements(Type elementType) {
        List<Object> list = new ArrayList<Object>();
        char ch = peek();
        if (ch != '[') {
            list.add(value(elementType)); // ACCEPT_SINGLE_VALUE_AS_ARRAY
            return list;
        }
        pos++;
        if (peek() == ']') {
            pos++;
            return list;
        }
        while (true) {
            list.add(value(elementType));
            char d = peek();
            pos++;
            if (d == ']') {
                return list;
            }
            if (d != ',') {
                pos--;
                throw error("Expected ',' or ']' but found " + describe());
            }
        }
    }

    private Object array(Type type, Class<?> c) {
        Class<?> component = c.getComponentType();
        char ch = peek();
        if (component == byte.class && (ch == '"' || ch == '\'')) {
            String text = string();
            return Base64.getMimeDecoder().decode(text);
        }
        if (component == char.class && (ch == '"' || ch == '\'')) {
            return string().toCharArray();
        }
        Type elementType = type instanceof java.lang.reflect.GenericArrayType
                ? ((java.lang.reflect.GenericArrayType) type).getGenericComponentType() : component;
        List<Object> items = elements(elementType);
        Object array = Array.newInstance(component, items.size());
        for (int i = 0; i < items.size(); i++) {
            Array.set(array, i, items.get(i));
        }
        return array;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Object collection(Type type, Class<?> c) {
        Type[] args = Types.argsOf(type, Collection.class);
        Type elementType = args == null ? Object.class : args[0];
        if (c == Iterable.class) {
            elementType = Types.arg(type, 0);
        }
        List<Object> items = elements(elementType);
        Collection target;
        if (c.isAssignableFrom(ArrayList.class)) {
            return items;
        } else if (c.isAssignableFrom(HashSet.class)) {
            target = new HashSet();
        } else if (c.isAssignableFrom(TreeSet.class) && SortedSet.class.isAssignableFrom(c)) {
            target = new TreeSet();
        } else if (c.isAssignableFrom(ArrayDeque.class) && Queue.class.isAssignableFrom(c)) {
            target = new ArrayDeque();
        } else {
            target = (Collection) instantiate(c);
        }
        target.addAll(items);
        return target;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Object map(Type type, Class<?> c) {
        char ch = peek();
        if (ch == '[') {
            return unwrapSingle(type);
        }
        if (ch == '"' || ch == '\'') {
            int save = pos;
            if (string().isEmpty()) {
                return null;
            }
            pos = save;
        }
        if (ch != '{') {
            throw error("Cannot deserialize value of type `" + Types.name(type) + "` from " + describe());
        }
        Type[] args = Types.argsOf(type, Map.class);
        Type keyType = args == null ? Object.class : args[0];
        Type valueType = args == null ? Object.class : args[1];
        Class<?> keyClass = Types.raw(keyType);
        Map target;
        if (c.isAssignableFrom(LinkedHashMap.class)) {
            target = new LinkedHashMap();
        } else if (c.isAssignableFrom(TreeMap.class) && SortedMap.class.isAssignableFrom(c)) {
            target = new TreeMap();
        } else if (c.isAssignableFrom(ConcurrentHashMap.class) && ConcurrentMap.class.isAssignableFrom(c)) {
            target = new ConcurrentHashMap();
        } else {
            target = (Map) instantiate(c);
        }
        pos++;
        if (peek() == '}') {
            pos++;
            return target;
        }
        while (true) {
            String key = name();
            expect(':');
            target.put(mapKey(key, keyClass), value(valueType));
            char d = peek();
            pos++;
            if (d == '}') {
                return target;
            }
            if (d != ',') {
                pos--;
                throw error("Expected ',' or '}' but found " + describe());
            }
        }
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Object mapKey(String key, Class<?> c) {
        if (c == String.class || c == Object.class || c == CharSequence.class) {
            return key;
        }
        if (c.isEnum()) {
            for (Object k : c.getEnumConstants()) {
                if (((Enum) k).name().equals(key)) {
                    return k;
                }
            }
            return null;
        }
        if (c == UUID.class) {
            return UUID.fromString(key);
        }
        if (c == Boolean.class) {
            return Boolean.valueOf(key);
        }
        if (c == Character.class && key.length() == 1) {
            return Character.valueOf(key.charAt(0));
        }
        try {
            return convertNumber(key.trim(), c);
        } catch (RuntimeException e) {
            throw error("Cannot deserialize Map key of type `" + c.getName() + "` from String \"" + key + "\"");
        }
    }

    private Object instantiate(Class<?> c) {
        if (c.isInterface() || Modifier.isAbstract(c.getModifiers())) {
            throw error("Cannot construct instance of `" + c.getName() + "`: abstract types either need to be mapped "
                    + "to concrete types, have custom deserializer, or contain additional type information");
        }
        try {
            Constructor<?> ctor = c.getDeclaredConstructor();
            Beans.accessible(ctor);
            return ctor.newInstance();
        } catch (ReflectiveOperationException e) {
            throw error("Cannot construct instance of `" + c.getName() + "`: " + e);
        }
    }

    private Object bean(Type type, Class<?> c) {
        char ch = peek();
        if (ch == '[') {
            return unwrapSingle(type);
        }
        if (ch == '"' || ch == '\'') {
            int save = pos;
            if (string().isEmpty()) {
                return null; // ACCEPT_EMPTY_STRING_AS_NULL_OBJECT
            }
            pos = save;
        }
        Beans.Reader reader = Beans.reader(type);
        if (ch != '{') {
            throw error("Cannot construct instance of `" + c.getName() + "` (although at least one Creator exists): "
                    + "no delegate- or property-based Creator to deserialize from " + describe());
        }
        if (reader.ctor == null) {
            throw error("Cannot construct instance of `" + c.getName() + "` (" + reader.problem + ")");
        }
        pos++;
        Object bean = null;
        Object[] args = null;
        if (reader.components != null) {
            args = new Object[reader.components.length];
        } else {
            try {
                bean = reader.ctor.newInstance();
            } catch (java.lang.reflect.InvocationTargetException e) {
                throw new JsonException("Cannot construct instance of `" + c.getName() + "`", e.getCause());
            } catch (ReflectiveOperationException e) {
                throw new JsonException("Cannot construct instance of `" + c.getName() + "`", e);
            }
        }
        if (peek() == '}') {
            pos++;
        } else {
            while (true) {
                String key = name();
                expect(':');
                Beans.Prop prop = reader.find(key);
                if (prop == null) {
                    natural(); // unknown property: ignored
                } else if (args != null) {
                    for (int i = 0; i < reader.components.length; i++) {
                        if (reader.components[i] == prop) {
                            args[i] = value(prop.type);
                        }
                    }
                } else {
                    Object v = value(prop.type);
                    try {
                        prop.set(bean, v);
                    } catch (Exception e) {
                        throw new JsonException("Cannot set property \"" + prop.name + "\" of `" + c.getName() + "`", e);
                    }
                }
                char d = peek();
                pos++;
                if (d == '}') {
                    break;
                }
                if (d != ',') {
                    pos--;
                    throw error("Expected ',' or '}' but found " + describe());
                }
            }
        }
        if (args != null) {
            for (int i = 0; i < args.length; i++) {
                if (args[i] == null) {
                    args[i] = nullFor(Types.raw(reader.components[i].type));
                }
            }
            try {
                return reader.ctor.newInstance(args);
            } catch (java.lang.reflect.InvocationTargetException e) {
                throw new JsonException("Cannot construct instance of `" + c.getName() + "`", e.getCause());
            } catch (ReflectiveOperationException e) {
                throw new JsonException("Cannot construct instance of `" + c.getName() + "`", e);
            }
        }
        return bean;
    }
}
