package com.amazonaws.services.lambda.runtime.logging;

/** Levels of LambdaLogger messages; UNDEFINED messages are never filtered. */
public enum LogLevel {
    UNDEFINED, TRACE, DEBUG, INFO, WARN, ERROR, FATAL;

    /** The level named (any case), UNDEFINED when blank or unknown. */
    public static LogLevel fromString(String name) {
        if (name != null) {
            for (LogLevel level : values()) {
                if (level.name().equalsIgnoreCase(name.trim())) {
                    return level;
                }
            }
        }
        return UNDEFINED;
    }
}
