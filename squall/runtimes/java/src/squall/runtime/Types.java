package squall.runtime;

import java.lang.reflect.Array;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;

/** Generic type helpers: raw classes, type-variable bindings, a supertype's type arguments. */
final class Types {
    private Types() {
    }

    /** The class a type erases to (a type variable or wildcard: its first upper bound). */
    static Class<?> raw(Type t) {
        if (t instanceof Class) {
            return (Class<?>) t;
        }
        if (t instanceof ParameterizedType) {
            return (Class<?>) ((ParameterizedType) t).getRawType();
        }
        if (t instanceof GenericArrayType) {
            return Array.newInstance(raw(((GenericArrayType) t).getGenericComponentType()), 0).getClass();
        }
        if (t instanceof WildcardType) {
            Type[] upper = ((WildcardType) t).getUpperBounds();
            return upper.length == 0 ? Object.class : raw(upper[0]);
        }
        if (t instanceof TypeVariable) {
            Type[] bounds = ((TypeVariable<?>) t).getBounds();
            return bounds.length == 0 ? Object.class : raw(bounds[0]);
        }
        return Object.class;
    }

    /** Type argument {@code i} of a parameterized type; Object for a raw one. */
    static Type arg(Type t, int i) {
        if (t instanceof ParameterizedType) {
            Type[] args = ((ParameterizedType) t).getActualTypeArguments();
            if (i < args.length) {
                return args[i];
            }
        }
        return Object.class;
    }

    /** The type variables of {@code t}'s class bound to {@code t}'s arguments. */
    static Map<TypeVariable<?>, Type> bindings(Type t) {
        Map<TypeVariable<?>, Type> map = new HashMap<TypeVariable<?>, Type>();
        addBindings(t, map);
        return map;
    }

    private static void addBindings(Type t, Map<TypeVariable<?>, Type> map) {
        if (t instanceof ParameterizedType) {
            ParameterizedType p = (ParameterizedType) t;
            TypeVariable<?>[] vars = raw(p).getTypeParameters();
            Type[] args = p.getActualTypeArguments();
            for (int i = 0; i < vars.length && i < args.length; i++) {
                map.put(vars[i], args[i]);
            }
        }
    }

    /** Bindings of {@code t} and of every generic superclass above it (for inherited members). */
    static Map<TypeVariable<?>, Type> hierarchyBindings(Type t) {
        Map<TypeVariable<?>, Type> map = new HashMap<TypeVariable<?>, Type>();
        Type current = t;
        while (current != null && raw(current) != Object.class) {
            addBindings(current, map);
            Type sup = raw(current).getGenericSuperclass();
            current = sup == null ? null : resolve(sup, map);
        }
        return map;
    }

    /** {@code t} with the bound type variables replaced. */
    static Type resolve(Type t, Map<TypeVariable<?>, Type> b) {
        if (b.isEmpty() || t instanceof Class) {
            return t;
        }
        if (t instanceof TypeVariable) {
            Type bound = b.get(t);
            return bound == null ? t : bound;
        }
        if (t instanceof ParameterizedType) {
            ParameterizedType p = (ParameterizedType) t;
            Type[] args = p.getActualTypeArguments().clone();
            boolean changed = false;
            for (int i = 0; i < args.length; i++) {
                Type r = resolve(args[i], b);
                if (r != args[i]) {
                    args[i] = r;
                    changed = true;
                }
            }
            return changed ? new Param(raw(p), args, p.getOwnerType()) : t;
        }
        if (t instanceof GenericArrayType) {
            Type component = resolve(((GenericArrayType) t).getGenericComponentType(), b);
            if (component instanceof Class) {
                return Array.newInstance((Class<?>) component, 0).getClass();
            }
            return new GenericArray(component);
        }
        if (t instanceof WildcardType) {
            Type[] upper = ((WildcardType) t).getUpperBounds();
            return upper.length == 0 ? Object.class : resolve(upper[0], b);
        }
        return t;
    }

    /**
     * The type arguments with which {@code type} implements or extends {@code target},
     * resolved as far as {@code type} allows (unbound ones stay type variables); null when
     * {@code type} does not extend {@code target} or does so through a raw type.
     */
    static Type[] argsOf(Type type, Class<?> target) {
        Class<?> raw = raw(type);
        if (!target.isAssignableFrom(raw)) {
            return null;
        }
        Map<TypeVariable<?>, Type> b = bindings(type);
        if (raw == target) {
            if (!(type instanceof ParameterizedType)) {
                return null;
            }
            return ((ParameterizedType) type).getActualTypeArguments();
        }
        Type sup = raw.getGenericSuperclass();
        if (sup != null) {
            Type[] found = argsOf(resolve(sup, b), target);
            if (found != null) {
                return found;
            }
        }
        for (Type i : raw.getGenericInterfaces()) {
            Type[] found = argsOf(resolve(i, b), target);
            if (found != null) {
                return found;
            }
        }
        return null;
    }

    static String name(Type t) {
        return t instanceof Class ? ((Class<?>) t).getName() : t.getTypeName();
    }

    static final class Param implements ParameterizedType {
        private final Class<?> raw;
        private final Type[] args;
        private final Type owner;

        Param(Class<?> raw, Type[] args, Type owner) {
            this.raw = raw;
            this.args = args;
            this.owner = owner;
        }

        @Override
        public Type[] getActualTypeArguments() {
            return args.clone();
        }

        @Override
        public Type getRawType() {
            return raw;
        }

        @Override
        public Type getOwnerType() {
            return owner;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof ParameterizedType)) {
                return false;
            }
            ParameterizedType p = (ParameterizedType) o;
            return raw.equals(p.getRawType()) && Objects.equals(owner, p.getOwnerType())
                    && Arrays.equals(args, p.getActualTypeArguments());
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(args) ^ Objects.hashCode(owner) ^ raw.hashCode();
        }

        @Override
        public String getTypeName() {
            StringBuilder sb = new StringBuilder(raw.getName()).append('<');
            for (int i = 0; i < args.length; i++) {
                if (i > 0) {
                    sb.append(", ");
                }
                sb.append(args[i].getTypeName());
            }
            return sb.append('>').toString();
        }

        @Override
        public String toString() {
            return getTypeName();
        }
    }

    static final class GenericArray implements GenericArrayType {
        private final Type component;

        GenericArray(Type component) {
            this.component = component;
        }

        @Override
        public Type getGenericComponentType() {
            return component;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof GenericArrayType && component.equals(((GenericArrayType) o).getGenericComponentType());
        }

        @Override
        public int hashCode() {
            return component.hashCode();
        }

        @Override
        public String toString() {
            return component.getTypeName() + "[]";
        }
    }
}
