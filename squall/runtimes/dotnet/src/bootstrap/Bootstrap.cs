// The managed runtime (dotnet6 / dotnet8 on Mono): loads the function's assembly from
// /var/task by the handler "Assembly::Namespace.Type::Method" and calls it via reflection.
using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;
using System.Threading.Tasks;
using Amazon.Lambda.Core;
using Squall.Lambda;

static class SquallBootstrap
{
    static string TaskRoot = Environment.GetEnvironmentVariable("LAMBDA_TASK_ROOT") ?? "/var/task";

    static Assembly Resolve(object sender, ResolveEventArgs args)
    {
        string name = new AssemblyName(args.Name).Name;
        if (name == "Amazon.Lambda.Core") return typeof(ILambdaContext).Assembly;  // whatever version was asked for
        foreach (var dir in new[] { TaskRoot, "/opt/dotnetcore/store", "/opt/lib", "/opt" })
        {
            foreach (var ext in new[] { ".dll", ".exe" })
            {
                string path = Path.Combine(dir, name + ext);
                if (File.Exists(path)) return Assembly.LoadFrom(path);
            }
        }
        return null;
    }

    static int Main()
    {
        AppDomain.CurrentDomain.AssemblyResolve += Resolve;
        var client = new RuntimeApiClient();
        LambdaBootstrap.InstallConsole();
        Func<Stream, ILambdaContext, Stream> invoke;
        try
        {
            invoke = Load(Environment.GetEnvironmentVariable("_HANDLER") ?? "");
        }
        catch (Exception e)
        {
            LambdaBootstrap.ReportInitError(client, e);
            return 1;
        }
        LambdaBootstrap.Loop(client, invoke);
        return 0;
    }

    static Func<Stream, ILambdaContext, Stream> Load(string handler)
    {
        string[] parts = handler.Split(new[] { "::" }, StringSplitOptions.None);
        if (parts.Length != 3 || parts.Any(p => p.Length == 0))
            throw new LambdaRuntimeException("Runtime.MalformedHandlerName",
                "Invalid handler \"" + handler + "\": expected Assembly::Namespace.Type::Method");
        string path = null;
        foreach (var ext in new[] { ".dll", ".exe", "" })
        {
            string candidate = Path.Combine(TaskRoot, parts[0] + ext);
            if (File.Exists(candidate)) { path = candidate; break; }
        }
        if (path == null)
            throw new LambdaRuntimeException("Runtime.AssemblyNotFound",
                "Could not find the assembly " + parts[0] + ".dll in " + TaskRoot);
        Assembly assembly;
        try { assembly = Assembly.LoadFrom(path); }
        catch (BadImageFormatException e)
        {
            throw new LambdaRuntimeException("Runtime.BadImageFormat",
                "Mono cannot load " + path + " (" + e.Message + "): build it for netstandard2.0 or the .NET Framework "
                + "(a .NET 6/8 assembly that uses APIs Mono lacks cannot run here), or deploy a self-contained bootstrap on provided.al2023");
        }
        Type type = assembly.GetType(parts[1], false);
        if (type == null)
            throw new LambdaRuntimeException("Runtime.TypeNotFound", "Unable to find type '" + parts[1] + "' in assembly " + parts[0]);
        MethodInfo[] candidates = type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance)
            .Where(m => m.Name == parts[2] && m.GetParameters().Length <= 2).OrderByDescending(m => m.IsPublic).ToArray();
        if (candidates.Length == 0)
            throw new LambdaRuntimeException("Runtime.MethodNotFound", "Unable to find method '" + parts[2] + "' in type '" + parts[1] + "'");
        MethodInfo method = candidates[0];
        object target = null;
        if (!method.IsStatic)
        {
            try { target = Activator.CreateInstance(type, true); }
            catch (Exception e)
            {
                e = LambdaBootstrap.Unwrap(e);
                throw new LambdaRuntimeException("Runtime.ConstructorError",
                    "Unable to create an instance of " + type.FullName + ": " + e.GetType().Name + ": " + e.Message);
            }
        }
        ParameterInfo[] parameters = method.GetParameters();
        if (parameters.Length == 2 && !typeof(ILambdaContext).IsAssignableFrom(parameters[1].ParameterType))
            throw new LambdaRuntimeException("Runtime.InvalidHandlerSignature",
                "The second parameter of " + handler + " must be an ILambdaContext");
        Type inputType = parameters.Length > 0 ? parameters[0].ParameterType : null;
        if (inputType != null && typeof(ILambdaContext).IsAssignableFrom(inputType) && parameters.Length == 1) inputType = null;
        return (input, context) =>
        {
            object[] args = new object[parameters.Length];
            int next = 0;
            if (inputType != null)
            {
                if (typeof(Stream).IsAssignableFrom(inputType)) args[next++] = input;
                else
                {
                    string text = new StreamReader(input, Encoding.UTF8).ReadToEnd();
                    args[next++] = text.Trim().Length == 0 ? null : Json.Deserialize(text, inputType);
                }
            }
            if (next < parameters.Length) args[next] = context;
            object result = method.Invoke(target, args);
            Type returned = method.ReturnType;
            var task = result as Task;
            if (task != null)
            {
                task.GetAwaiter().GetResult();
                if (returned.IsGenericType)
                {
                    returned = returned.GetGenericArguments()[0];
                    result = task.GetType().GetProperty("Result").GetValue(task, null);
                }
                else returned = typeof(void);
            }
            if (returned == typeof(void)) return null;
            var stream = result as Stream;
            if (stream != null) return stream;
            return new MemoryStream(Encoding.UTF8.GetBytes(Json.Serialize(result)));
        };
    }
}
