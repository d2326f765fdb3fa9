package com.amazonaws.services.lambda.runtime.logging;

/** The function's log format (AWS_LAMBDA_LOG_FORMAT). */
public enum LogFormat {
    JSON, TEXT;

    /** JSON when named so (any case), TEXT otherwise. */
    public static LogFormat fromString(String name) {
        return name != null && name.trim().equalsIgnoreCase("JSON") ? JSON : TEXT;
    }
}
