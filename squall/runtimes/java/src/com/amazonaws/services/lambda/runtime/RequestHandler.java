package com.amazonaws.services.lambda.runtime;

/**
 * A handler whose event is deserialised from JSON into {@code I} and whose result of type
 * {@code O} is serialised back to JSON.
 */
public interface RequestHandler<I, O> {
    O handleRequest(I input, Context context);
}
