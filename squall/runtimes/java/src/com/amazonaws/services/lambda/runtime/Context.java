package com.amazonaws.services.lambda.runtime;

/** What a handler learns about the current invocation and its function. */
public interface Context {
    String getAwsRequestId();

    String getLogGroupName();

    String getLogStreamName();

    String getFunctionName();

    String getFunctionVersion();

    String getInvokedFunctionArn();

    /** The Amazon Cognito identity of the caller, or null. */
    CognitoIdentity getIdentity();

    /** The mobile client's context, or null. */
    ClientContext getClientContext();

    /** Milliseconds left before the invocation times out (never negative). */
    int getRemainingTimeInMillis();

    int getMemoryLimitInMB();

    LambdaLogger getLogger();

    /** The X-Ray trace header of this invocation, or null. */
    default String getXrayTraceId() {
        return null;
    }

    /** The tenant of this invocation (tenant-isolated functions), or null. */
    default String getTenantId() {
        return null;
    }
}
