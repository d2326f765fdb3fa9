package squall.runtime;

import com.amazonaws.services.lambda.runtime.Client;
import com.amazonaws.services.lambda.runtime.ClientContext;
import com.amazonaws.services.lambda.runtime.CognitoIdentity;
import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.LambdaLogger;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** The Context of one invocation. */
final class InvocationContext implements Context {
    static final String FUNCTION_NAME = System.getenv("AWS_LAMBDA_FUNCTION_NAME");
    static final String FUNCTION_VERSION = System.getenv("AWS_LAMBDA_FUNCTION_VERSION");
    static final String LOG_GROUP = System.getenv("AWS_LAMBDA_LOG_GROUP_NAME");
    static final String LOG_STREAM = System.getenv("AWS_LAMBDA_LOG_STREAM_NAME");
    static final int MEMORY_MB = memory();

    private final String requestId;
    private final long deadlineMs;
    private final String arn;
    private final String traceId;
    private final CognitoIdentity identity;
    private final ClientContext clientContext;

    InvocationContext(String requestId, long deadlineMs, String arn, String traceId, String cognito, String client) {
        this.requestId = requestId;
        this.deadlineMs = deadlineMs;
        this.arn = arn;
        this.traceId = traceId;
        this.identity = cognito == null || cognito.isEmpty() ? null : identity(cognito);
        this.clientContext = client == null || client.isEmpty() ? null : clientContext(client);
    }

    private static int memory() {
        try {
            return Integer.parseInt(System.getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").trim());
        } catch (RuntimeException e) {
            return 128;
        }
    }

    @Override
    public String getAwsRequestId() {
        return requestId;
    }

    @Override
    public String getLogGroupName() {
        return LOG_GROUP;
    }

    @Override
    public String getLogStreamName() {
        return LOG_STREAM;
    }

    @Override
    public String getFunctionName() {
        return FUNCTION_NAME;
    }

    @Override
    public String getFunctionVersion() {
        return FUNCTION_VERSION;
    }

    @Override
    public String getInvokedFunctionArn() {
        return arn;
    }

    @Override
    public CognitoIdentity getIdentity() {
        return identity;
    }

    @Override
    public ClientContext getClientContext() {
        return clientContext;
    }

    @Override
    public int getRemainingTimeInMillis() {
        long left = deadlineMs - System.currentTimeMillis();
        return left > 0 ? (int) Math.min(left, Integer.MAX_VALUE) : 0;
    }

    @Override
    public int getMemoryLimitInMB() {
        return MEMORY_MB;
    }

    @Override
    public LambdaLogger getLogger() {
        return RuntimeLogger.INSTANCE;
    }

    @Override
    public String getXrayTraceId() {
        return traceId;
    }

    @Override
    public String toString() {
        return "Context(awsRequestId=" + requestId + ", functionName=" + FUNCTION_NAME + ", invokedFunctionArn=" + arn + ")";
    }

    // ---- headers ----------------------------------------------------------------------

    private static Map<?, ?> object(String json) {
        try {
            Object v = Json.parse(json);
            return v instanceof Map ? (Map<?, ?>) v : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static String text(Map<?, ?> m, String key) {
        Object v = m == null ? null : m.get(key);
        return v == null ? null : String.valueOf(v);
    }

    private static Map<String, String> strings(Object v) {
        if (!(v instanceof Map)) {
            return null;
        }
        Map<String, String> out = new LinkedHashMap<String, String>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
            Object val = e.getValue();
            out.put(String.valueOf(e.getKey()), val == null ? null : val instanceof String ? (String) val : Json.write(val));
        }
        return Collections.unmodifiableMap(out);
    }

    private static CognitoIdentity identity(String json) {
        final Map<?, ?> m = object(json);
        if (m == null) {
            return null;
        }
        final String id = text(m, "cognitoIdentityId");
        final String pool = text(m, "cognitoIdentityPoolId");
        return new CognitoIdentity() {
            @Override
            public String getIdentityId() {
                return id;
            }

            @Override
            public String getIdentityPoolId() {
                return pool;
            }
        };
    }

    private static ClientContext clientContext(String json) {
        Map<?, ?> m = object(json);
        if (m == null) {
            return null;
        }
        Object c = m.get("client");
        final Map<?, ?> cm = c instanceof Map ? (Map<?, ?>) c : null;
        final Client client = cm == null ? null : new Client() {
            @Override
            public String getInstallationId() {
                return text(cm, "installation_id");
            }

            @Override
            public String getAppTitle() {
                return text(cm, "app_title");
            }

            @Override
            public String getAppVersionName() {
                return text(cm, "app_version_name");
            }

            @Override
            public String getAppVersionCode() {
                return text(cm, "app_version_code");
            }

            @Override
            public String getAppPackageName() {
                return text(cm, "app_package_name");
            }
        };
        final Map<String, String> custom = strings(m.get("custom"));
        final Map<String, String> env = strings(m.get("env"));
        return new ClientContext() {
            @Override
            public Client getClient() {
                return client;
            }

            @Override
            public Map<String, String> getCustom() {
                return custom;
            }

            @Override
            public Map<String, String> getEnvironment() {
                return env;
            }
        };
    }
}
