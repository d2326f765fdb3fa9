"""C# functions end to end: dotnet8 served on Mono, a Mono program on provided.al2023, and (where a
.NET SDK is installed) dotnetN on the real .NET host.

A real server (``linux`` sandbox where the machine allows it, else ``process``). Handlers are
compiled in the test with ``mcs`` against Squall's own Amazon.Lambda.Core.dll, built with the
same function the server uses (:func:`squall.runtimes.dotnet.build_runtime`).

Skips: the Mono tests use ``require()`` (they fail under SQUALL_TEST_STRICT=1, CI installs Mono).
The test that needs a .NET SDK (``dotnet``) calls ``pytest.skip`` directly: it is the only skip
SQUALL_TEST_STRICT may allow in this file (CI has no .NET SDK).
"""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from tests.conftest import create_function, require, start_server

pytestmark = pytest.mark.timeout(300)

HANDLER = """
using System;
using System.Collections.Generic;
using System.Threading;
using Amazon.Lambda.Core;

namespace Example
{
    public class Order { public string item { get; set; } public int count { get; set; } }

    public class Functions
    {
        public Dictionary<string, object> Handle(Dictionary<string, object> input, ILambdaContext context)
        {
            context.Logger.LogLine("hello from csharp " + input["name"]);
            Console.WriteLine("via the console");
            if (input.ContainsKey("fail")) throw new InvalidOperationException("csharp boom");
            if (input.ContainsKey("sleep")) Thread.Sleep(10000);
            var result = new Dictionary<string, object>();
            result["greeting"] = "hello " + input["name"];
            result["functionName"] = context.FunctionName;
            result["requestId"] = context.AwsRequestId;
            result["arn"] = context.InvokedFunctionArn;
            result["memory"] = context.MemoryLimitInMB;
            result["version"] = context.FunctionVersion;
            result["logGroup"] = context.LogGroupName;
            result["remainingMs"] = context.RemainingTime.TotalMilliseconds;
            result["identityIsNull"] = context.Identity == null;
            result["execEnv"] = Environment.GetEnvironmentVariable("AWS_EXECUTION_ENV");
            return result;
        }

        public static string Upper(string input, ILambdaContext context) { return input.ToUpperInvariant(); }

        public Order Place(Order order) { order.count += 1; return order; }
    }
}
"""

PROGRAM = """
using System;
using Amazon.Lambda.Core;
using Squall.Lambda;

public static class Program
{
    public static void Main()
    {
        LambdaBootstrap.Run((string input, ILambdaContext context) =>
        {
            context.Logger.LogInformation("provided says hi");
            return "custom:" + input + ":" + context.FunctionName;
        });
    }
}
"""


def _mono() -> None:
    require(bool(shutil.which("mono") and shutil.which("mcs")), "Mono (apt install mono-runtime mono-mcs)")


@pytest.fixture(scope="module")
def csharp_server(tmp_path_factory):
    from tests.contract import linux_unavailable

    isolation = "linux" if linux_unavailable() is None else "process"
    running = start_server(tmp_path_factory.mktemp("squall-csharp"), "--isolation", isolation)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(csharp_server):
    return csharp_server.client("lambda")


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    _mono()
    from squall.runtimes import dotnet

    return dotnet.build_runtime(tmp_path_factory.mktemp("dotnet-runtime"))


@pytest.fixture(scope="module")
def function_dll(runtime_dir, tmp_path_factory):
    from squall.runtimes import dotnet

    return dotnet.compile_handler({"Functions.cs": HANDLER}, runtime_dir, tmp_path_factory.mktemp("fn") / "Function.dll")


def invoke(lam, name, payload, **kwargs):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload), LogType="Tail", **kwargs)
    body = response["Payload"].read()
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return (json.loads(body) if body else None), response.get("FunctionError"), log


def test_dotnet8_handler_on_mono(lam, function_dll):
    name = create_function(lam, {"Function.dll": function_dll.read_bytes()}, handler="Function::Example.Functions::Handle",
                           Runtime="dotnet8", MemorySize=256, Timeout=30)
    body, error, log = invoke(lam, name, {"name": "mono"})
    assert error is None, (body, log)
    assert body["greeting"] == "hello mono" and body["functionName"] == name
    assert len(body["requestId"]) >= 32 and body["remainingMs"] > 0 and body["memory"] == 256
    assert body["version"] == "$LATEST" and body["logGroup"] == f"/aws/lambda/{name}" and body["identityIsNull"] is True
    assert body["execEnv"] == "AWS_Lambda_dotnet8"
    assert "hello from csharp mono" in log and "via the console" in log
    assert "INIT_START Runtime Version: dotnet:" in log

    body, error, log = invoke(lam, name, {"name": "x", "fail": True})
    assert error == "Unhandled"
    assert body["errorType"] == "InvalidOperationException" and body["errorMessage"] == "csharp boom"
    assert isinstance(body["stackTrace"], list) and any("Handle" in line for line in body["stackTrace"])

    body, error, _ = invoke(lam, name, {"name": "again"})  # the environment survived the exception
    assert error is None and body["greeting"] == "hello again"


def test_string_and_poco_handlers(lam, function_dll):
    name = create_function(lam, {"Function.dll": function_dll.read_bytes()}, handler="Function::Example.Functions::Upper",
                           Runtime="dotnet8", MemorySize=256, Timeout=30)
    body, error, _ = invoke(lam, name, "shout")
    assert error is None and body == "SHOUT"
    name = create_function(lam, {"Function.dll": function_dll.read_bytes()}, handler="Function::Example.Functions::Place",
                           Runtime="dotnet6", MemorySize=256, Timeout=30)
    body, error, _ = invoke(lam, name, {"item": "tea", "count": 2})
    assert error is None and body == {"item": "tea", "count": 3}


def test_timeout(lam, function_dll):
    name = create_function(lam, {"Function.dll": function_dll.read_bytes()}, handler="Function::Example.Functions::Handle",
                           Runtime="dotnet8", MemorySize=256, Timeout=1)
    invoke(lam, name, {"name": "warm"})  # the first start (JIT, assembly load) is not part of the test
    body, error, _ = invoke(lam, name, {"name": "slow", "sleep": True})
    assert error == "Unhandled" and "Task timed out" in body["errorMessage"]


def test_missing_type_is_an_init_error(lam, function_dll):
    name = create_function(lam, {"Function.dll": function_dll.read_bytes()}, handler="Function::Example.Nope::Handle",
                           Runtime="dotnet8", MemorySize=256, Timeout=30)
    body, error, _ = invoke(lam, name, {})
    assert error == "Unhandled" and body["errorType"] == "Runtime.TypeNotFound"


def test_runtimes_lists_dotnet_with_the_mono_note(csharp_server):
    _mono()
    import urllib.request

    health = json.loads(urllib.request.urlopen(f"{csharp_server.endpoint}/health", timeout=10).read())
    assert "dotnet8" in health["runtimes"]
    assert "Mono" in health["runtimes_warnings"]["dotnet8"] and "netstandard2.0" in health["runtimes_warnings"]["dotnet8"]


def test_provided_al2023_mono_program(lam, runtime_dir, tmp_path):
    from squall.runtimes import dotnet

    exe = dotnet.compile_handler({"Program.cs": PROGRAM}, runtime_dir, tmp_path / "Function.exe", target="exe")
    files = {"Function.exe": exe.read_bytes(), "Amazon.Lambda.Core.dll": (runtime_dir / dotnet.CORE_DLL).read_bytes(),
             "bootstrap": "#!/bin/sh\nexec mono /var/task/Function.exe\n"}
    name = create_function(lam, files, handler="Function", Runtime="provided.al2023", MemorySize=256, Timeout=30,
                           modes={"bootstrap": 0o755})
    body, error, log = invoke(lam, name, "abc")
    assert error is None, (body, log)
    assert body == f"custom:abc:{name}" and "provided says hi" in log


def test_dotnet_sdk_native_build(tmp_path_factory):
    """dotnetN on a real .NET host with its SDK. The only skip SQUALL_TEST_STRICT may allow here."""
    from squall.runtimes import dotnet
    from squall.runtimes.registry import find_dotnet_host

    host = find_dotnet_host()
    if not host.dotnet:
        pytest.skip("no .NET SDK (`dotnet`) on this machine: the .NET-host build path is not tested")
    assert not host.problem, host.problem
    major = max(host.runtimes)
    built = dotnet.build_runtime_sdk(tmp_path_factory.mktemp("sdk-build"), host.dotnet, f"net{major}.0")
    assert (built / dotnet.BOOTSTRAP_DLL).is_file() and (built / dotnet.CORE_DLL).is_file()
    _mono()  # the handler is compiled with mcs (netstandard-style), as a user may ship one
    runtime = dotnet.build_runtime(tmp_path_factory.mktemp("mono-build"))
    dll = dotnet.compile_handler({"Functions.cs": HANDLER}, runtime, tmp_path_factory.mktemp("fn") / "Function.dll")
    running = start_server(tmp_path_factory.mktemp("squall-dotnet-sdk"))
    try:
        lam = running.client("lambda")
        name = create_function(lam, {"Function.dll": dll.read_bytes()}, handler="Function::Example.Functions::Handle",
                               Runtime=f"dotnet{major}", MemorySize=512, Timeout=60)
        body, error, log = invoke(lam, name, {"name": "dotnet"})
        assert error is None, (body, log)
        assert body["greeting"] == "hello dotnet" and f"Runtime Version: dotnet:{host.runtimes[major]}" in log
        body, error, _ = invoke(lam, name, {"name": "x", "fail": True})
        assert error == "Unhandled" and body["errorType"] == "InvalidOperationException"
    finally:
        running.stop()
