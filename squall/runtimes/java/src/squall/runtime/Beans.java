package squall.runtime;

import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * How POJOs map to JSON objects, as the Lambda Java runtime's Jackson configuration does:
 * properties from public setters / getters (standard bean naming: getURL is "URL") and
 * public fields (final ones too); the no-argument constructor may be of any visibility;
 * records through their canonical constructor and accessors.
 */
final class Beans {
    private Beans() {
    }

    private static final String EVENTS_PACKAGE = "com.amazonaws.services.lambda.runtime.events.";
    private static final Map<Type, Reader> READERS = new ConcurrentHashMap<Type, Reader>();
    private static final Map<Class<?>, Getter[]> GETTERS = new ConcurrentHashMap<Class<?>, Getter[]>();

    /** Property name of a getter/setter suffix ("URL" stays, "Name" becomes "name"). */
    static String beanName(String suffix) {
        if (suffix.length() > 1 && Character.isUpperCase(suffix.charAt(0)) && Character.isUpperCase(suffix.charAt(1))) {
            return suffix;
        }
        return Character.toLowerCase(suffix.charAt(0)) + suffix.substring(1);
    }

    static void accessible(java.lang.reflect.AccessibleObject member) {
        try {
            member.trySetAccessible();
        } catch (RuntimeException e) {
            // left as it is: a public member of a public class needs nothing
        }
    }

    // ---- reading ----------------------------------------------------------------------

    static final class Prop {
        final String name;
        final Type type;
        final Method setter;
        final Field field;

        Prop(String name, Type type, Method setter, Field field) {
            this.name = name;
            this.type = type;
            this.setter = setter;
            this.field = field;
        }

        void set(Object bean, Object value) throws Exception {
            if (setter != null) {
                try {
                    setter.invoke(bean, value);
                } catch (InvocationTargetException e) {
                    Throwable cause = e.getCause();
                    throw cause instanceof Exception ? (Exception) cause : e;
                }
            } else {
                field.set(bean, value);
            }
        }
    }

    static final class Reader {
        final Class<?> cls;
        final Constructor<?> ctor; // null: cannot be instantiated (see problem)
        final String problem;
        final Map<String, Prop> props;
        final Map<String, Prop> folded; // lower-case names (AWS events classes only), or null
        final Prop[] components; // records: canonical constructor parameters, or null

        Reader(Class<?> cls, Constructor<?> ctor, String problem, Map<String, Prop> props, Map<String, Prop> folded,
               Prop[] components) {
            this.cls = cls;
            this.ctor = ctor;
            this.problem = problem;
            this.props = props;
            this.folded = folded;
            this.components = components;
        }

        Prop find(String name) {
            Prop p = props.get(name);
            if (p == null && folded != null) {
                p = folded.get(name.toLowerCase(Locale.ROOT));
            }
            return p;
        }
    }

    static Reader reader(Type type) {
        Reader r = READERS.get(type);
        if (r == null) {
            r = makeReader(type);
            READERS.put(type, r);
        }
        return r;
    }

    private static Reader makeReader(Type type) {
        Class<?> cls = Types.raw(type);
        Map<TypeVariable<?>, Type> b = Types.hierarchyBindings(type);
        Map<String, Prop> props = new LinkedHashMap<String, Prop>();
        if (cls.isRecord()) {
            RecordComponent[] rc = cls.getRecordComponents();
            Prop[] components = new Prop[rc.length];
            Class<?>[] raw = new Class<?>[rc.length];
            for (int i = 0; i < rc.length; i++) {
                components[i] = new Prop(rc[i].getName(), Types.resolve(rc[i].getGenericType(), b), null, null);
                raw[i] = rc[i].getType();
                props.put(rc[i].getName(), components[i]);
            }
            Constructor<?> ctor = null;
            String problem = null;
            try {
                ctor = cls.getDeclaredConstructor(raw);
                accessible(ctor);
            } catch (NoSuchMethodException e) {
                problem = "no canonical constructor";
            }
            return new Reader(cls, ctor, problem, props, null, components);
        }
        for (Method m : cls.getMethods()) {
            String n = m.getName();
            if (n.length() > 3 && n.startsWith("set") && m.getParameterCount() == 1 && !Modifier.isStatic(m.getModifiers())
                    && !m.isBridge() && !m.isSynthetic()) {
                String name = beanName(n.substring(3));
                if (!props.containsKey(name)) {
                    accessible(m);
                    props.put(name, new Prop(name, Types.resolve(m.getGenericParameterTypes()[0], b), m, null));
                }
            }
        }
        for (Class<?> c = cls; c != null && c != Object.class; c = c.getSuperclass()) {
            for (Field f : c.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (Modifier.isPublic(mod) && !Modifier.isStatic(mod) && !Modifier.isTransient(mod)
                        && !props.containsKey(f.getName())) {
                    accessible(f);
                    props.put(f.getName(), new Prop(f.getName(), Types.resolve(f.getGenericType(), b), null, f));
                }
            }
        }
        Map<String, Prop> folded = null;
        if (cls.getName().startsWith(EVENTS_PACKAGE)) {
            folded = new HashMap<String, Prop>();
            for (Prop p : props.values()) {
                folded.put(p.name.toLowerCase(Locale.ROOT), p);
            }
        }
        Constructor<?> ctor = null;
        String problem = null;
        if (cls.isInterface() || Modifier.isAbstract(cls.getModifiers())) {
            problem = "abstract types either need to be mapped to concrete types, have custom deserializer, "
                    + "or contain additional type information";
        } else if (cls.getEnclosingClass() != null && !Modifier.isStatic(cls.getModifiers())) {
            problem = "non-static inner classes like this can only by instantiated using default, no-argument constructor";
        } else {
            try {
                ctor = cls.getDeclaredConstructor();
                accessible(ctor);
            } catch (NoSuchMethodException e) {
                problem = "no Creators, like default constructor, exist";
            }
        }
        return new Reader(cls, ctor, problem, props, folded, null);
    }

    // ---- writing ----------------------------------------------------------------------

    static final class Getter {
        final String name;
        final Method method;
        final Field field;

        Getter(String name, Method method, Field field) {
            this.name = name;
            this.method = method;
            this.field = field;
        }

        Object get(Object bean) throws Exception {
            if (method != null) {
                try {
                    return method.invoke(bean);
                } catch (InvocationTargetException e) {
                    Throwable cause = e.getCause();
                    throw cause instanceof Exception ? (Exception) cause : e;
                }
            }
            return field.get(bean);
        }
    }

    /** The properties written for an object of {@code cls}, in Jackson's order (fields' order first). */
    static Getter[] getters(Class<?> cls) {
        Getter[] g = GETTERS.get(cls);
        if (g == null) {
            g = makeGetters(cls);
            GETTERS.put(cls, g);
        }
        return g;
    }

    private static Getter[] makeGetters(Class<?> cls) {
        Map<String, Getter> order = new LinkedHashMap<String, Getter>();
        if (cls.isRecord()) {
            for (RecordComponent rc : cls.getRecordComponents()) {
                Method m = rc.getAccessor();
                accessible(m);
                order.put(rc.getName(), new Getter(rc.getName(), m, null));
            }
            return order.values().toArray(new Getter[0]);
        }
        List<Class<?>> chain = new ArrayList<Class<?>>();
        for (Class<?> c = cls; c != null && c != Object.class; c = c.getSuperclass()) {
            chain.add(0, c);
        }
        for (Class<?> c : chain) {
            for (Field f : c.getDeclaredFields()) {
                if (!Modifier.isStatic(f.getModifiers()) && !order.containsKey(f.getName())) {
                    order.put(f.getName(), null);
                }
            }
        }
        for (Method m : cls.getMethods()) {
            if (Modifier.isStatic(m.getModifiers()) || m.getParameterCount() != 0 || m.isBridge() || m.isSynthetic()
                    || m.getDeclaringClass() == Object.class) {
                continue;
            }
            Class<?> rt = m.getReturnType();
            String n = m.getName();
            String name;
            if (n.length() > 3 && n.startsWith("get") && rt != void.class) {
                name = beanName(n.substring(3));
            } else if (n.length() > 2 && n.startsWith("is") && rt == boolean.class) {
                name = beanName(n.substring(2));
                Getter existing = order.get(name);
                if (existing != null && existing.method != null) {
                    continue; // getX wins over isX
                }
            } else {
                continue;
            }
            Getter existing = order.get(name);
            if (existing != null && existing.method != null && existing.method.getName().startsWith("get")) {
                continue;
            }
            accessible(m);
            order.put(name, new Getter(name, m, null));
        }
        for (Class<?> c : chain) {
            for (Field f : c.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (Modifier.isPublic(mod) && !Modifier.isStatic(mod) && !Modifier.isTransient(mod)
                        && order.get(f.getName()) == null) {
                    accessible(f);
                    order.put(f.getName(), new Getter(f.getName(), null, f));
                }
            }
        }
        List<Getter> result = new ArrayList<Getter>();
        for (Getter g : order.values()) {
            if (g != null) {
                result.add(g);
            }
        }
        return result.toArray(new Getter[0]);
    }
}
