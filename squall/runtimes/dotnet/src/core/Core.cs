// Squall's copy of the Amazon.Lambda.Core handler API (ILambdaContext, ILambdaLogger, ...),
// source-compatible with AWS's package: handler code compiles against it unchanged.
using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;

[assembly: AssemblyVersion("2.0.0.0")]
[assembly: AssemblyTitle("Amazon.Lambda.Core (Squall)")]

namespace Amazon.Lambda.Core
{
    public interface ILambdaLogger
    {
        void Log(string message);
        void LogLine(string message);
        void Log(string level, string message);
        void LogTrace(string message);
        void LogDebug(string message);
        void LogInformation(string message);
        void LogWarning(string message);
        void LogError(string message);
        void LogCritical(string message);
    }

    public interface ICognitoIdentity
    {
        string IdentityId { get; }
        string IdentityPoolId { get; }
    }

    public interface IClientApplication
    {
        string AppPackageName { get; }
        string AppTitle { get; }
        string AppVersionCode { get; }
        string AppVersionName { get; }
        string InstallationId { get; }
    }

    public interface IClientContext
    {
        IDictionary<string, string> Environment { get; }
        IClientApplication Client { get; }
        IDictionary<string, string> Custom { get; }
    }

    public interface ILambdaContext
    {
        string AwsRequestId { get; }
        IClientContext ClientContext { get; }
        string FunctionName { get; }
        string FunctionVersion { get; }
        ICognitoIdentity Identity { get; }
        string InvokedFunctionArn { get; }
        ILambdaLogger Logger { get; }
        string LogGroupName { get; }
        string LogStreamName { get; }
        int MemoryLimitInMB { get; }
        TimeSpan RemainingTime { get; }
    }

    public interface ILambdaSerializer
    {
        T Deserialize<T>(Stream requestStream);
        void Serialize<T>(T response, Stream responseStream);
    }

    [AttributeUsage(AttributeTargets.Assembly | AttributeTargets.Method, AllowMultiple = false)]
    public sealed class LambdaSerializerAttribute : Attribute
    {
        public LambdaSerializerAttribute(Type serializerType) { SerializerType = serializerType; }
        public Type SerializerType { get; set; }
    }

    public enum LogLevel { Trace = 0, Debug = 1, Information = 2, Warning = 3, Error = 4, Critical = 5, None = 6 }

    /// <summary>The static logger (Amazon.Lambda.Core.LambdaLogger): writes to the function's log.</summary>
    public static class LambdaLogger
    {
        public static void Log(string message)
        {
            Squall.Lambda.RuntimeLog.Write(null, message);
        }
    }
}
