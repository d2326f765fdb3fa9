package com.amazonaws.services.lambda.runtime;

/** Access to the runtime's logger outside a handler (e.g. in static initialisers). */
public final class LambdaRuntime {
    private LambdaRuntime() {
    }

    public static LambdaLogger getLogger() {
        return squall.runtime.RuntimeLogger.INSTANCE;
    }
}
