// Squall's Lambda Runtime API client for C#: the loop, the context, the logger, JSON in and out.
// Usable on its own from a program deployed on provided.al2023:
//     Squall.Lambda.LambdaBootstrap.Run((string input, ILambdaContext context) => ...);
using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
#if SQUALL_NETCORE
using System.Text.Json;
#else
using System.Web.Script.Serialization;
#endif
using Amazon.Lambda.Core;

namespace Squall.Lambda
{
    /// <summary>Lambda's log format: "time\trequestId\tlevel\tmessage", or JSON (AWS_LAMBDA_LOG_FORMAT=JSON).</summary>
    public static class RuntimeLog
    {
        static readonly object Gate = new object();
        static readonly TextWriter Out = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true };
        static readonly bool Json = string.Equals(Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_FORMAT"), "JSON", StringComparison.OrdinalIgnoreCase);
        static readonly int Minimum = LevelRank(Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_LEVEL") ?? "");
        public static string RequestId = "";

        public static TextWriter RawOut { get { return Out; } }

        static int LevelRank(string level)
        {
            switch ((level ?? "").ToLowerInvariant())
            {
                case "trace": case "trce": return 0;
                case "debug": case "dbug": return 1;
                case "information": case "info": return 2;
                case "warning": case "warn": return 3;
                case "error": case "fail": return 4;
                case "critical": case "fatal": case "crit": return 5;
                default: return -1;
            }
        }

        static string ShortName(string level)
        {
            switch (LevelRank(level))
            {
                case 0: return "trce";
                case 1: return "dbug";
                case 2: return "info";
                case 3: return "warn";
                case 4: return "fail";
                case 5: return "crit";
                default: return level;
            }
        }

        static string JsonName(string level)
        {
            switch (LevelRank(level))
            {
                case 0: return "TRACE";
                case 1: return "DEBUG";
                case 2: return "INFO";
                case 3: return "WARN";
                case 4: return "ERROR";
                case 5: return "FATAL";
                default: return "INFO";
            }
        }

        /// <summary>One log record; level null: a message without a level (always written).</summary>
        public static void Write(string level, string message)
        {
            if (level != null && Minimum >= 0 && LevelRank(level) >= 0 && LevelRank(level) < Minimum) return;
            string time = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ");
            string line;
            if (Json)
            {
                var record = new Dictionary<string, object>();
                record["timestamp"] = time;
                record["level"] = JsonName(level ?? "info");
                record["requestId"] = RequestId;
                record["message"] = message ?? "";
                line = Squall.Lambda.Json.Serialize(record);
            }
            else
            {
                line = time + "\t" + RequestId + "\t" + ShortName(level ?? "info") + "\t" + (message ?? "");
            }
            lock (Gate) { Out.WriteLine(line); }
        }
    }

    sealed class Logger : ILambdaLogger
    {
        public void Log(string message) { RuntimeLog.Write(null, message); }
        public void LogLine(string message) { RuntimeLog.Write(null, message); }
        public void Log(string level, string message) { RuntimeLog.Write(level, message); }
        public void LogTrace(string message) { RuntimeLog.Write("trace", message); }
        public void LogDebug(string message) { RuntimeLog.Write("debug", message); }
        public void LogInformation(string message) { RuntimeLog.Write("information", message); }
        public void LogWarning(string message) { RuntimeLog.Write("warning", message); }
        public void LogError(string message) { RuntimeLog.Write("error", message); }
        public void LogCritical(string message) { RuntimeLog.Write("critical", message); }
    }

    /// <summary>Console.Out / Console.Error: each line becomes a log record of the current request.</summary>
    sealed class LineWriter : TextWriter
    {
        readonly string level;
        readonly StringBuilder pending = new StringBuilder();
        public LineWriter(string level) { this.level = level; }
        public override Encoding Encoding { get { return Encoding.UTF8; } }
        public override void Write(char value)
        {
            lock (pending)
            {
                if (value == '\n')
                {
                    string text = pending.ToString().TrimEnd('\r');
                    pending.Clear();
                    RuntimeLog.Write(level, text);
                }
                else pending.Append(value);
            }
        }
        public override void Write(string value)
        {
            if (value == null) return;
            foreach (char c in value) Write(c);
        }
        public override void Flush()
        {
            lock (pending)
            {
                if (pending.Length > 0) { RuntimeLog.Write(level, pending.ToString()); pending.Clear(); }
            }
        }
    }

    sealed class CognitoIdentity : ICognitoIdentity
    {
        public string IdentityId { get; set; }
        public string IdentityPoolId { get; set; }
    }

    sealed class ClientApplication : IClientApplication
    {
        public string AppPackageName { get; set; }
        public string AppTitle { get; set; }
        public string AppVersionCode { get; set; }
        public string AppVersionName { get; set; }
        public string InstallationId { get; set; }
    }

    sealed class ClientContext : IClientContext
    {
        public IDictionary<string, string> Environment { get; set; }
        public IClientApplication Client { get; set; }
        public IDictionary<string, string> Custom { get; set; }
    }

    /// <summary>The ILambdaContext of one invocation.</summary>
    public sealed class LambdaContext : ILambdaContext
    {
        readonly long deadlineMs;
        internal LambdaContext(string requestId, string arn, long deadlineMs, IClientContext client, ICognitoIdentity identity)
        {
            AwsRequestId = requestId;
            InvokedFunctionArn = arn;
            this.deadlineMs = deadlineMs;
            ClientContext = client;
            Identity = identity;
            FunctionName = Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_NAME") ?? "";
            FunctionVersion = Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_VERSION") ?? "$LATEST";
            LogGroupName = Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_GROUP_NAME") ?? "";
            LogStreamName = Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_STREAM_NAME") ?? "";
            int memory;
            MemoryLimitInMB = int.TryParse(Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), out memory) ? memory : 128;
            Logger = new Logger();
        }
        public string AwsRequestId { get; private set; }
        public IClientContext ClientContext { get; private set; }
        public string FunctionName { get; private set; }
        public string FunctionVersion { get; private set; }
        public ICognitoIdentity Identity { get; private set; }
        public string InvokedFunctionArn { get; private set; }
        public ILambdaLogger Logger { get; private set; }
        public string LogGroupName { get; private set; }
        public string LogStreamName { get; private set; }
        public int MemoryLimitInMB { get; private set; }
        public TimeSpan RemainingTime
        {
            get
            {
                long now = (long)(DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalMilliseconds;
                return TimeSpan.FromMilliseconds(Math.Max(0, deadlineMs - now));
            }
        }
    }

    /// <summary>An error reported in Lambda's shape with an errorType of its own (e.g. Runtime.HandlerNotFound).</summary>
    public sealed class LambdaRuntimeException : Exception
    {
        public LambdaRuntimeException(string type, string message) : base(message) { ErrorType = type; }
        public string ErrorType { get; private set; }
    }

    /// <summary>JSON in and out: System.Web.Extensions' JavaScriptSerializer on Mono, System.Text.Json
    /// on .NET (built with SQUALL_NETCORE). Either way a payload read as <c>object</c> is made of
    /// Dictionary&lt;string, object&gt;, List&lt;object&gt;, strings, numbers, booleans and null.</summary>
    public static class Json
    {
#if SQUALL_NETCORE
        static readonly JsonSerializerOptions Options = new JsonSerializerOptions
        {
            PropertyNameCaseInsensitive = true,
            MaxDepth = 1000,
        };

        static object Plain(JsonElement element)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    var map = new Dictionary<string, object>();
                    foreach (var property in element.EnumerateObject()) map[property.Name] = Plain(property.Value);
                    return map;
                case JsonValueKind.Array:
                    var list = new List<object>();
                    foreach (var item in element.EnumerateArray()) list.Add(Plain(item));
                    return list.ToArray();
                case JsonValueKind.String: return element.GetString();
                case JsonValueKind.Number:
                    int small; long big; decimal exact;
                    if (element.TryGetInt32(out small)) return small;
                    if (element.TryGetInt64(out big)) return big;
                    if (element.TryGetDecimal(out exact)) return exact;
                    return element.GetDouble();
                case JsonValueKind.True: return true;
                case JsonValueKind.False: return false;
                default: return null;
            }
        }

        public static object Deserialize(string text, Type type)
        {
            if (type == typeof(string))
            {
                string trimmed = text.Trim();
                if (trimmed.StartsWith("\"")) return JsonSerializer.Deserialize<string>(trimmed, Options);
                if (trimmed == "null") return null;
                return text;  // lenient: a payload that is not a JSON string is passed as it is
            }
            if (type == typeof(object) || type == typeof(Dictionary<string, object>) || type == typeof(IDictionary<string, object>))
            {
                using (var document = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 1000 }))
                    return Plain(document.RootElement);
            }
            return JsonSerializer.Deserialize(text, type, Options);
        }

        public static string Serialize(object value)
        {
            return JsonSerializer.Serialize(value, value == null ? typeof(object) : value.GetType(), Options);
        }
#else
        static JavaScriptSerializer Serializer()
        {
            return new JavaScriptSerializer { MaxJsonLength = int.MaxValue, RecursionLimit = 1000 };
        }

        public static object Deserialize(string text, Type type)
        {
            if (type == typeof(object)) return Serializer().DeserializeObject(text);
            if (type == typeof(string))
            {
                string trimmed = text.Trim();
                if (trimmed.StartsWith("\"")) return Serializer().Deserialize<string>(trimmed);
                if (trimmed == "null") return null;
                return text;  // lenient: a payload that is not a JSON string is passed as it is
            }
            return Serializer().Deserialize(text, type);
        }

        public static string Serialize(object value)
        {
            return Serializer().Serialize(value);
        }
#endif
    }

    /// <summary>The Runtime API client: GET next, POST response / error, init/error.</summary>
    public sealed class RuntimeApiClient
    {
        // The Runtime API is on the environment's own loopback: a plain HTTP/1.1 client over one
        // keep-alive socket. (Mono's first HttpWebRequest costs ~0.7 s of proxy and configuration
        // set-up: most of a cold start.)
        readonly string host;
        readonly int port;
        readonly string prefix = "/2018-06-01/runtime/";
        TcpClient client;
        Stream stream;

        public RuntimeApiClient() : this(Environment.GetEnvironmentVariable("AWS_LAMBDA_RUNTIME_API")) { }

        public RuntimeApiClient(string api)
        {
            if (string.IsNullOrEmpty(api)) throw new InvalidOperationException("AWS_LAMBDA_RUNTIME_API is not set");
            int colon = api.LastIndexOf(':');
            host = colon > 0 ? api.Substring(0, colon) : api;
            port = colon > 0 ? int.Parse(api.Substring(colon + 1)) : 80;
        }

        sealed class Response
        {
            public int Status;
            public Dictionary<string, string> Headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            public byte[] Body;
        }

        Response Send(string method, string path, string contentType, string errorType, byte[] body)
        {
            for (int attempt = 0; ; attempt++)
            {
                bool reused = client != null;
                try
                {
                    if (client == null)
                    {
                        client = new TcpClient();
                        client.NoDelay = true;
                        client.Connect(host, port);
                        stream = new BufferedStream(client.GetStream(), 65536);
                    }
                    var head = new StringBuilder();
                    head.Append(method).Append(' ').Append(prefix).Append(path).Append(" HTTP/1.1\r\n");
                    head.Append("Host: ").Append(host).Append(':').Append(port).Append("\r\n");
                    if (body != null)
                    {
                        head.Append("Content-Type: ").Append(contentType).Append("\r\n");
                        head.Append("Content-Length: ").Append(body.Length).Append("\r\n");
                    }
                    if (errorType != null) head.Append("Lambda-Runtime-Function-Error-Type: ").Append(errorType).Append("\r\n");
                    head.Append("\r\n");
                    var bytes = Encoding.ASCII.GetBytes(head.ToString());
                    stream.Write(bytes, 0, bytes.Length);
                    if (body != null) stream.Write(body, 0, body.Length);
                    stream.Flush();
                    return Read();
                }
                catch (IOException)
                {
                    Close();
                    if (!reused || attempt > 0) throw;  // a kept-alive connection the server closed: once more
                }
                catch (SocketException)
                {
                    Close();
                    if (!reused || attempt > 0) throw;
                }
            }
        }

        void Close()
        {
            try { if (client != null) client.Close(); } catch (Exception) { }
            client = null;
            stream = null;
        }

        string ReadLine()
        {
            var line = new StringBuilder();
            while (true)
            {
                int b = stream.ReadByte();
                if (b < 0) throw new IOException("the Runtime API closed the connection");
                if (b == '\n') break;
                if (b != '\r') line.Append((char)b);
            }
            return line.ToString();
        }

        void ReadExactly(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int n = stream.Read(buffer, offset, count);
                if (n <= 0) throw new IOException("the Runtime API closed the connection");
                offset += n;
                count -= n;
            }
        }

        Response Read()
        {
            var response = new Response();
            var status = ReadLine().Split(' ');
            response.Status = status.Length > 1 ? int.Parse(status[1]) : 0;
            for (var line = ReadLine(); line.Length > 0; line = ReadLine())
            {
                int colon = line.IndexOf(':');
                if (colon > 0) response.Headers[line.Substring(0, colon).Trim()] = line.Substring(colon + 1).Trim();
            }
            string value;
            if (response.Headers.TryGetValue("Content-Length", out value))
            {
                response.Body = new byte[long.Parse(value)];
                ReadExactly(response.Body, 0, response.Body.Length);
            }
            else if (response.Headers.TryGetValue("Transfer-Encoding", out value) && value.ToLowerInvariant().Contains("chunked"))
            {
                var body = new MemoryStream();
                while (true)
                {
                    var size = ReadLine();
                    int semicolon = size.IndexOf(';');
                    int length = Convert.ToInt32(semicolon >= 0 ? size.Substring(0, semicolon) : size, 16);
                    if (length == 0) { while (ReadLine().Length > 0) { } break; }
                    var chunk = new byte[length];
                    ReadExactly(chunk, 0, length);
                    body.Write(chunk, 0, length);
                    ReadLine();
                }
                response.Body = body.ToArray();
            }
            else
            {
                var body = new MemoryStream();
                stream.CopyTo(body);  // no length: the body ends with the connection
                response.Body = body.ToArray();
                Close();
            }
            if (response.Headers.TryGetValue("Connection", out value) && value.ToLowerInvariant() == "close") Close();
            return response;
        }

        public sealed class Invocation
        {
            public string RequestId;
            public string FunctionArn;
            public long DeadlineMs;
            public string TraceId;
            public string ClientContext;
            public string CognitoIdentity;
            public byte[] Body;
        }

        public Invocation Next()
        {
            var response = Send("GET", "invocation/next", null, null, null);
            if (response.Status != 200)
                throw new IOException("Runtime API invocation/next: HTTP " + response.Status);
            string value;
            long deadline = 0;
            if (response.Headers.TryGetValue("Lambda-Runtime-Deadline-Ms", out value)) long.TryParse(value, out deadline);
            return new Invocation
            {
                RequestId = Header(response, "Lambda-Runtime-Aws-Request-Id") ?? "",
                FunctionArn = Header(response, "Lambda-Runtime-Invoked-Function-Arn") ?? "",
                DeadlineMs = deadline,
                TraceId = Header(response, "Lambda-Runtime-Trace-Id"),
                ClientContext = Header(response, "Lambda-Runtime-Client-Context"),
                CognitoIdentity = Header(response, "Lambda-Runtime-Cognito-Identity"),
                Body = response.Body,
            };
        }

        static string Header(Response response, string name)
        {
            string value;
            return response.Headers.TryGetValue(name, out value) ? value : null;
        }

        void Post(string path, byte[] body, string errorType)
        {
            var response = Send("POST", path, errorType == null ? "application/octet-stream" : "application/json", errorType, body);
            if (response.Status >= 300)  // 413 (payload too large) and the like: the invoke already failed on the other side
                Console.Error.WriteLine("Runtime API " + path + ": HTTP " + response.Status);
        }

        public void Respond(string requestId, byte[] body) { Post("invocation/" + requestId + "/response", body, null); }
        public void Fail(string requestId, string errorType, byte[] document) { Post("invocation/" + requestId + "/error", document, errorType); }
        public void InitError(string errorType, byte[] document) { Post("init/error", document, errorType); }
    }

    /// <summary>Runs handlers against the Runtime API, as Amazon.Lambda.RuntimeSupport's LambdaBootstrap does.</summary>
    public static class LambdaBootstrap
    {
        public delegate Stream StreamHandler(Stream input, ILambdaContext context);

        public static void Run(Func<string, ILambdaContext, string> handler)
        {
            RunStream((Stream input, ILambdaContext context) =>
            {
                string text = new StreamReader(input, Encoding.UTF8).ReadToEnd();
                string result = handler((string)Json.Deserialize(text, typeof(string)), context);
                return new MemoryStream(Encoding.UTF8.GetBytes(Json.Serialize(result)));
            });
        }

        public static void Run<TIn, TOut>(Func<TIn, ILambdaContext, TOut> handler)
        {
            RunStream((Stream input, ILambdaContext context) =>
            {
                string text = new StreamReader(input, Encoding.UTF8).ReadToEnd();
                TOut result = handler((TIn)Json.Deserialize(text, typeof(TIn)), context);
                return new MemoryStream(Encoding.UTF8.GetBytes(Json.Serialize(result)));
            });
        }

        public static void Run(Func<Stream, ILambdaContext, Stream> handler)
        {
            RunStream(handler);
        }

        /// <summary>The loop itself, for a handler of streams (no overload ambiguity with Run&lt;TIn, TOut&gt;).</summary>
        public static void RunStream(Func<Stream, ILambdaContext, Stream> handler)
        {
            var client = new RuntimeApiClient();
            InstallConsole();
            Loop(client, (input, context) => handler(input, context));
        }

        public static void InstallConsole()
        {
            Console.SetOut(new LineWriter("info"));
            Console.SetError(new LineWriter("error"));
        }

        public static void Loop(RuntimeApiClient client, Func<Stream, ILambdaContext, Stream> handler)
        {
            while (true)
            {
                RuntimeApiClient.Invocation invocation = client.Next();
                RuntimeLog.RequestId = invocation.RequestId;
                if (invocation.TraceId != null) Environment.SetEnvironmentVariable("_X_AMZN_TRACE_ID", invocation.TraceId);
                byte[] result = null;
                Exception failure = null;
                try
                {
                    var context = new LambdaContext(invocation.RequestId, invocation.FunctionArn, invocation.DeadlineMs,
                                                    ParseClientContext(invocation.ClientContext), ParseIdentity(invocation.CognitoIdentity));
                    using (Stream output = handler(new MemoryStream(invocation.Body, false), context))
                    {
                        if (output == null) result = new byte[0];
                        else
                        {
                            var buffer = new MemoryStream();
                            output.CopyTo(buffer);
                            result = buffer.ToArray();
                        }
                    }
                }
                catch (Exception e)
                {
                    failure = Unwrap(e);
                }
                Console.Out.Flush();
                Console.Error.Flush();
                if (failure == null)
                {
                    client.Respond(invocation.RequestId, result);
                }
                else
                {
                    string type = ErrorType(failure);
                    RuntimeLog.Write("error", failure.ToString());
                    client.Fail(invocation.RequestId, type, ErrorDocument(failure));
                }
            }
        }

        static IClientContext ParseClientContext(string text)
        {
            if (string.IsNullOrEmpty(text)) return null;
            try
            {
                var map = Json.Deserialize(text, typeof(object)) as IDictionary<string, object>;
                if (map == null) return null;
                var context = new ClientContext { Environment = Strings(map, "env"), Custom = Strings(map, "custom") };
                object client;
                var app = map.TryGetValue("client", out client) ? client as IDictionary<string, object> : null;
                if (app != null)
                {
                    context.Client = new ClientApplication
                    {
                        InstallationId = Field(app, "installation_id"), AppTitle = Field(app, "app_title"),
                        AppVersionName = Field(app, "app_version_name"), AppVersionCode = Field(app, "app_version_code"),
                        AppPackageName = Field(app, "app_package_name"),
                    };
                }
                return context;
            }
            catch (Exception) { return null; }
        }

        static ICognitoIdentity ParseIdentity(string text)
        {
            if (string.IsNullOrEmpty(text)) return null;
            try
            {
                var map = Json.Deserialize(text, typeof(object)) as IDictionary<string, object>;
                if (map == null) return null;
                return new CognitoIdentity { IdentityId = Field(map, "cognitoIdentityId"), IdentityPoolId = Field(map, "cognitoIdentityPoolId") };
            }
            catch (Exception) { return null; }
        }

        static string Field(IDictionary<string, object> map, string key)
        {
            object value;
            return map.TryGetValue(key, out value) && value != null ? Convert.ToString(value) : null;
        }

        static IDictionary<string, string> Strings(IDictionary<string, object> map, string key)
        {
            object value;
            var inner = map.TryGetValue(key, out value) ? value as IDictionary<string, object> : null;
            if (inner == null) return null;
            var result = new Dictionary<string, string>();
            foreach (var pair in inner) result[pair.Key] = pair.Value == null ? null : Convert.ToString(pair.Value);
            return result;
        }

        public static Exception Unwrap(Exception e)
        {
            while (true)
            {
                if (e is TargetInvocationException && e.InnerException != null) { e = e.InnerException; continue; }
                var aggregate = e as AggregateException;
                if (aggregate != null && aggregate.InnerExceptions.Count == 1) { e = aggregate.InnerExceptions[0]; continue; }
                return e;
            }
        }

        public static string ErrorType(Exception e)
        {
            var runtime = e as LambdaRuntimeException;
            return runtime != null ? runtime.ErrorType : e.GetType().Name;
        }

        /// <summary>Lambda's error object: {errorType, errorMessage, stackTrace[]} (and the cause's, if any).</summary>
        public static byte[] ErrorDocument(Exception e)
        {
            return Encoding.UTF8.GetBytes(Json.Serialize(ErrorObject(e, 0)));
        }

        static Dictionary<string, object> ErrorObject(Exception e, int depth)
        {
            var document = new Dictionary<string, object>();
            document["errorType"] = ErrorType(e);
            document["errorMessage"] = e.Message;
            var trace = new List<string>();
            if (e.StackTrace != null && !(e is LambdaRuntimeException))
            {
                foreach (string line in e.StackTrace.Split('\n'))
                    if (line.Trim().Length > 0) trace.Add(line.Trim());
            }
            document["stackTrace"] = trace;
            if (e.InnerException != null && depth < 5) document["cause"] = ErrorObject(e.InnerException, depth + 1);
            return document;
        }

        public static void ReportInitError(RuntimeApiClient client, Exception e)
        {
            e = Unwrap(e);
            RuntimeLog.Write("error", e.ToString());
            try { client.InitError(ErrorType(e), ErrorDocument(e)); } catch (Exception) { }
        }
    }
}
