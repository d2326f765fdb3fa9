package squall.runtime;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.amazonaws.services.lambda.runtime.RequestStreamHandler;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Finds the handler named by _HANDLER as the Lambda Java runtime does.
 *
 * "pkg.Class": the class implements RequestStreamHandler or RequestHandler&lt;I, O&gt; (with
 * concrete type arguments) and has a public no-argument constructor.
 *
 * "pkg.Class::method": among the public methods of that name, non-bridge ones first, then
 * longer parameter lists first (a trailing Context counting one more), the first with a
 * supported signature wins: (InputStream, OutputStream, Context), (InputStream, OutputStream),
 * (OutputStream, Context), (InputStream, Context), (InputStream), (OutputStream), (Context),
 * (T, Context), (T), (). An instance method gets an instance made once with the public
 * no-argument constructor.
 */
final class HandlerLoader {
    private static final byte[] NULL = {'n', 'u', 'l', 'l'};

    private HandlerLoader() {
    }

    /** One invocation: the event's bytes in, the response's bytes into {@code out}. */
    interface Invoker {
        void invoke(byte[] event, ByteArrayOutputStream out, Context context) throws Throwable;
    }

    static Invoker load(String handler, ClassLoader loader) throws Fault {
        int colon = handler.lastIndexOf("::");
        String className = colon < 0 ? handler : handler.substring(0, colon);
        String methodName = colon < 0 ? null : handler.substring(colon + 2);
        if (className.isEmpty() || (methodName != null && methodName.isEmpty())) {
            throw Fault.message("Invalid handler: `" + handler + "'");
        }
        Class<?> cls;
        try {
            cls = Class.forName(className, true, loader);
        } catch (ClassNotFoundException e) {
            throw Fault.of("Class not found: " + className, e);
        } catch (Throwable t) { // NoClassDefFoundError, ExceptionInInitializerError...
            throw Fault.of("Error loading class " + className + (t.getMessage() == null ? "" : ": " + t.getMessage()), t);
        }
        return methodName == null ? classHandler(cls) : methodHandler(cls, methodName);
    }

    // ---- "pkg.Class" ------------------------------------------------------------------

    @SuppressWarnings("rawtypes")
    private static Invoker classHandler(Class<?> cls) throws Fault {
        if (RequestStreamHandler.class.isAssignableFrom(cls)) {
            return new StreamInvoker((RequestStreamHandler) instantiate(cls));
        }
        if (!RequestHandler.class.isAssignableFrom(cls)) {
            throw Fault.message("Class does not implement an appropriate handler interface: " + cls.getName());
        }
        Type[] types = Types.argsOf(cls, RequestHandler.class);
        if (types == null) {
            throw Fault.message("Class " + cls.getName() + " does not implement RequestHandler with concrete type parameters");
        }
        if (types.length != 2) {
            throw Fault.message("Invalid class signature for RequestHandler. Expected two generic types, got " + types.length);
        }
        for (Type t : types) {
            if (t instanceof TypeVariable) {
                boolean bounded = false;
                for (Type bound : ((TypeVariable<?>) t).getBounds()) {
                    if (!Object.class.equals(bound)) {
                        bounded = true;
                    }
                }
                if (!bounded) {
                    throw Fault.message("Class " + cls.getName() + " does not implement RequestHandler with concrete type "
                            + "parameters: parameter " + t + " has no upper bound.");
                }
            }
        }
        return new PojoInvoker((RequestHandler) instantiate(cls), types[0], isVoid(types[1]) ? null : types[1]);
    }

    private static boolean isVoid(Type t) {
        return t == void.class || t == Void.class;
    }

    private static Object instantiate(Class<?> cls) throws Fault {
        Constructor<?> ctor;
        try {
            ctor = cls.getConstructor();
        } catch (NoSuchMethodException e) {
            if (cls.getEnclosingClass() != null && !Modifier.isStatic(cls.getModifiers())) {
                throw Fault.of(new Exception("Class " + cls.getName()
                        + " cannot be instantiated because it is a non-static inner class"));
            }
            throw Fault.of(new Exception("Class " + cls.getName() + " has no public zero-argument constructor", e));
        }
        try {
            return ctor.newInstance();
        } catch (InvocationTargetException e) {
            throw Fault.of(e.getCause() == null ? e : e.getCause());
        } catch (InstantiationException e) {
            throw Fault.of(e.getCause() == null ? e : e.getCause());
        } catch (Throwable t) {
            throw Fault.of(t);
        }
    }

    // ---- "pkg.Class::method" ----------------------------------------------------------

    private static boolean isContext(Type t) {
        return Context.class.equals(t);
    }

    private static int weight(Method m) {
        Class<?>[] p = m.getParameterTypes();
        return p.length + (p.length > 0 && isContext(p[p.length - 1]) ? 1 : 0);
    }

    private static final Comparator<Method> PRIORITY = new Comparator<Method>() {
        @Override
        public int compare(Method a, Method b) {
            if (a.isBridge() != b.isBridge()) {
                return a.isBridge() ? 1 : -1;
            }
            return Integer.compare(weight(b), weight(a));
        }
    };

    private static Invoker methodHandler(Class<?> cls, String name) throws Fault {
        Method[] all;
        try {
            all = cls.getMethods();
        } catch (NoClassDefFoundError e) {
            throw Fault.of("Error loading method " + name + " on class " + cls.getName(), e);
        }
        List<Method> candidates = new ArrayList<Method>();
        for (Method m : all) {
            if (m.getName().equals(name)) {
                candidates.add(m);
            }
        }
        Method[] sorted = candidates.toArray(new Method[0]);
        Arrays.sort(sorted, PRIORITY);
        for (Method m : sorted) {
            Invoker invoker = overload(cls, m);
            if (invoker != null) {
                return invoker;
            }
        }
        throw Fault.message("No public method named " + name + " with appropriate method signature found on class "
                + cls.getName());
    }

    private static Invoker overload(Class<?> cls, Method m) throws Fault {
        Type r = m.getGenericReturnType();
        Type[] p = m.getGenericParameterTypes();
        if (p.length == 0) {
            return pojo(cls, m, null, false, r);
        }
        if (p.length == 1) {
            if (InputStream.class.equals(p[0])) {
                return stream(cls, m, true, false, false);
            }
            if (OutputStream.class.equals(p[0])) {
                return stream(cls, m, false, true, false);
            }
            if (isContext(p[0])) {
                return pojo(cls, m, null, true, r);
            }
            return pojo(cls, m, p[0], false, r);
        }
        if (p.length == 2) {
            if (OutputStream.class.equals(p[0])) {
                if (isContext(p[1])) {
                    return stream(cls, m, false, true, true);
                }
                System.err.println("Ignoring two-argument overload because first argument type is OutputStream and "
                        + "second argument type is not Context");
                return null;
            }
            if (isContext(p[0])) {
                System.err.println("Ignoring two-argument overload because first argument type is Context");
                return null;
            }
            if (InputStream.class.equals(p[0])) {
                if (OutputStream.class.equals(p[1])) {
                    return stream(cls, m, true, true, false);
                }
                if (isContext(p[1])) {
                    return stream(cls, m, true, false, true);
                }
                System.err.println("Ignoring two-argument overload because second parameter type, "
                        + Types.raw(p[1]).getName() + ", is not OutputStream.");
                return null;
            }
            if (isContext(p[1])) {
                return pojo(cls, m, p[0], true, r);
            }
            System.err.println("Ignoring two-argument overload because second parameter type is not Context");
            return null;
        }
        if (p.length == 3) {
            if (InputStream.class.equals(p[0]) && OutputStream.class.equals(p[1]) && isContext(p[2])) {
                return stream(cls, m, true, true, true);
            }
            System.err.println("Ignoring three-argument overload because argument signature is not "
                    + "(InputStream, OutputStream, Context");
            return null;
        }
        System.err.println("Ignoring an overload of method " + m.getName()
                + " because it has too many parameters: Expected at most 3, got " + p.length);
        return null;
    }

    private static Object instanceFor(Class<?> cls, Method m) throws Fault {
        Beans.accessible(m);
        return Modifier.isStatic(m.getModifiers()) ? null : instantiate(cls);
    }

    private static Invoker pojo(Class<?> cls, Method m, Type input, boolean context, Type result) throws Fault {
        return new MethodInvoker(m, instanceFor(cls, m), input, context, isVoid(result) ? null : result);
    }

    private static Invoker stream(Class<?> cls, Method m, boolean input, boolean output, boolean context) throws Fault {
        if (!isVoid(m.getReturnType())) {
            System.err.println("Will ignore return type " + m.getReturnType() + " on byte stream handler");
        }
        return new StreamMethodInvoker(m, instanceFor(cls, m), input, output, context);
    }

    // ---- invokers ---------------------------------------------------------------------

    static Object decode(byte[] event, Type type) {
        try {
            return Json.read(event, type);
        } catch (Throwable t) {
            throw new RuntimeException("An error occurred during JSON parsing", Fault.filter(t));
        }
    }

    static void encode(Object result, Type type, ByteArrayOutputStream out) {
        if (type == null) {
            out.write(NULL, 0, NULL.length);
            return;
        }
        byte[] bytes;
        try {
            bytes = Json.writeBytes(result);
        } catch (Throwable t) {
            throw new RuntimeException("An error occurred during JSON serialization of response", t);
        }
        out.write(bytes, 0, bytes.length);
    }

    static Throwable unwrap(InvocationTargetException e) {
        return e.getCause() != null ? e.getCause() : e;
    }

    private static final class StreamInvoker implements Invoker {
        private final RequestStreamHandler handler;

        StreamInvoker(RequestStreamHandler handler) {
            this.handler = handler;
        }

        @Override
        public void invoke(byte[] event, ByteArrayOutputStream out, Context context) throws Throwable {
            handler.handleRequest(new ByteArrayInputStream(event), out, context);
        }
    }

    @SuppressWarnings("rawtypes")
    private static final class PojoInvoker implements Invoker {
        private final RequestHandler handler;
        private final Type input;
        private final Type result; // null: void

        PojoInvoker(RequestHandler handler, Type input, Type result) {
            this.handler = handler;
            this.input = input;
            this.result = result;
        }

        @SuppressWarnings("unchecked")
        @Override
        public void invoke(byte[] event, ByteArrayOutputStream out, Context context) throws Throwable {
            Object value = decode(event, input);
            Object output = handler.handleRequest(value, context);
            encode(output, result, out);
        }
    }

    private static final class MethodInvoker implements Invoker {
        private final Method method;
        private final Object instance;
        private final Type input; // null: none
        private final boolean context;
        private final Type result; // null: void

        MethodInvoker(Method method, Object instance, Type input, boolean context, Type result) {
            this.method = method;
            this.instance = instance;
            this.input = input;
            this.context = context;
            this.result = result;
        }

        @Override
        public void invoke(byte[] event, ByteArrayOutputStream out, Context ctx) throws Throwable {
            Object[] args = new Object[(input != null ? 1 : 0) + (context ? 1 : 0)];
            int i = 0;
            if (input != null) {
                args[i++] = decode(event, input);
            }
            if (context) {
                args[i] = ctx;
            }
            Object output;
            try {
                output = method.invoke(instance, args);
            } catch (InvocationTargetException e) {
                throw unwrap(e);
            }
            encode(output, result, out);
        }
    }

    private static final class StreamMethodInvoker implements Invoker {
        private final Method method;
        private final Object instance;
        private final boolean input;
        private final boolean output;
        private final boolean context;

        StreamMethodInvoker(Method method, Object instance, boolean input, boolean output, boolean context) {
            this.method = method;
            this.instance = instance;
            this.input = input;
            this.output = output;
            this.context = context;
        }

        @Override
        public void invoke(byte[] event, ByteArrayOutputStream out, Context ctx) throws Throwable {
            Object[] args = new Object[(input ? 1 : 0) + (output ? 1 : 0) + (context ? 1 : 0)];
            int i = 0;
            if (input) {
                args[i++] = new ByteArrayInputStream(event);
            }
            if (output) {
                args[i++] = out;
            }
            if (context) {
                args[i] = ctx;
            }
            try {
                method.invoke(instance, args);
            } catch (InvocationTargetException e) {
                throw unwrap(e);
            }
            if (!output) {
                out.write(NULL, 0, NULL.length);
            }
        }
    }
}
