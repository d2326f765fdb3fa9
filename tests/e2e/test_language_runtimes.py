"""Built-in language runtimes end to end: Node.js, Ruby and Java functions through boto3.

A real server with the ``linux`` sandbox where the machine allows it (required in CI), else the
``process`` backend. Each language: a result with context fields, the function's log lines,
an error in Lambda's shape, a timeout, and an init failure.
"""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from tests.conftest import create_function, require

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def lam(strongest_server):
    return strongest_server.client("lambda")


def invoke(lam, name, payload=None, **kwargs):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload if payload is not None else {}), LogType="Tail",
                          **kwargs)
    body = response["Payload"].read()
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return (json.loads(body) if body else None), response.get("FunctionError"), log, response


# ------------------------------------------------------------------------------------ Node.js

NODE_APP = """
let count = 0;
export const handler = async (event, context) => {
  count += 1;
  console.log("hello from node", event.name);
  if (event.fail) { throw new TypeError("node boom"); }
  if (event.sleep) { await new Promise((r) => setTimeout(r, 10000)); }
  return {
    count, event,
    requestId: context.awsRequestId, functionName: context.functionName, arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB, left: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext, api: process.env.AWS_LAMBDA_RUNTIME_API,
    taskRoot: process.env.LAMBDA_TASK_ROOT, runtimeDir: process.env.LAMBDA_RUNTIME_DIR,
    execEnv: process.env.AWS_EXECUTION_ENV, uid: process.getuid(),
  };
};
"""

NODE_CALLBACK = """
exports.handler = function (event, context, callback) {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 60000);  // would keep the event loop busy
  callback(null, { style: "callback", got: event });
};
"""


@pytest.fixture(scope="module")
def node(lam):
    require(shutil.which("node") is not None, "Node.js is not installed (apt install nodejs)")


def test_node_async_handler(lam, strongest_server, node):
    name = create_function(lam, {"index.mjs": NODE_APP}, handler="index.handler", Runtime="nodejs20.x", Timeout=2)
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    body, error, log, response = invoke(lam, name, {"name": "ada"}, ClientContext=context)
    assert error is None, (body, log)
    assert body["count"] == 1 and body["event"] == {"name": "ada"}
    assert body["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert body["functionName"] == name and body["arn"].endswith(f":function:{name}")
    assert body["memory"] == "128" and 0 < body["left"] <= 2000
    assert body["clientContext"]["custom"] == {"k": "v"}
    assert body["execEnv"] == "AWS_Lambda_nodejs20.x"
    if strongest_server.isolation == "linux":
        assert body["taskRoot"] == "/var/task" and body["runtimeDir"] == "/var/runtime" and body["uid"] != 0
    assert f"\t{body['requestId']}\tINFO\thello from node ada" in log
    assert "INIT_START Runtime Version: nodejs:" in log
    body, error, _, _ = invoke(lam, name, {"name": "again"})
    assert error is None and body["count"] == 2  # warm: module state kept

    body, error, log, _ = invoke(lam, name, {"fail": True})
    assert error == "Unhandled"
    assert body["errorType"] == "TypeError" and body["errorMessage"] == "node boom"
    assert isinstance(body["trace"], list) and body["trace"][0].startswith("TypeError: node boom")
    assert "\tERROR\tInvoke Error \t" in log

    body, error, log, _ = invoke(lam, name, {"sleep": True})
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in log


def test_node_callback_handler_and_commonjs(lam, node):
    name = create_function(lam, {"lib/handler.js": NODE_CALLBACK}, handler="lib/handler.handler", Runtime="nodejs18.x")
    body, error, log, _ = invoke(lam, name, {"x": 1})
    assert error is None, (body, log)
    assert body == {"style": "callback", "got": {"x": 1}}


def test_node_init_errors(lam, node):
    missing = create_function(lam, {"index.js": "exports.other = () => 1;\n"}, handler="index.handler", Runtime="nodejs22.x")
    body, error, log, _ = invoke(lam, missing)
    assert error == "Unhandled" and body["errorType"] == "Runtime.HandlerNotFound"
    assert "Phase: init\tStatus: error\tError Type: Runtime.HandlerNotFound" in log
    no_module = create_function(lam, {"index.js": "exports.handler = () => 1;\n"}, handler="nope.handler", Runtime="nodejs20.x")
    body, error, _, _ = invoke(lam, no_module)
    assert error == "Unhandled" and body["errorType"] == "Runtime.ImportModuleError"
    syntax = create_function(lam, {"index.mjs": "export const handler = async ( => 1;\n"}, handler="index.handler",
                             Runtime="nodejs20.x")
    body, error, _, _ = invoke(lam, syntax)
    assert error == "Unhandled" and body["errorType"] == "Runtime.UserCodeSyntaxError"


def test_node_without_network_reaches_its_runtime_api(lam, strongest_server, node):
    if strongest_server.isolation != "linux":
        pytest.skip("only the linux backend cuts the network")
    name = create_function(lam, {"index.mjs": NODE_APP}, handler="index.handler", Runtime="nodejs20.x",
                           Tags={"squall:network": "none"})
    body, error, log, _ = invoke(lam, name, {"name": "offline"})
    assert error is None, (body, log)
    assert body["api"] == "127.0.0.1:9001"


# --------------------------------------------------------------------------------------- Ruby

RUBY_APP = """
require 'json'
require 'logger'

$count = 0
LOGGER = Logger.new($stdout)

def handler(event:, context:)
  $count += 1
  puts "hello from ruby #{event['name']}"
  LOGGER.info("logged")
  raise ArgumentError, 'ruby boom' if event['fail']
  sleep 10 if event['sleep']
  { 'count' => $count, 'event' => event, 'request_id' => context.aws_request_id,
    'function_name' => context.function_name, 'left' => context.get_remaining_time_in_millis,
    'memory' => context.memory_limit_in_mb, 'task_root' => ENV['LAMBDA_TASK_ROOT'], 'uid' => Process.uid }
end

module Shop
  class Orders
    def self.process(event:, context:)
      { 'order' => event['id'] }
    end
  end
end
"""


@pytest.fixture(scope="module")
def ruby(lam):
    require(shutil.which("ruby") is not None, "Ruby is not installed (apt install ruby)")


def test_ruby_handler(lam, strongest_server, ruby):
    name = create_function(lam, {"lib/app.rb": RUBY_APP}, handler="lib/app.handler", Runtime="ruby3.3", Timeout=2)
    body, error, log, response = invoke(lam, name, {"name": "matz"})
    assert error is None, (body, log)
    assert body["count"] == 1 and body["event"] == {"name": "matz"}
    assert body["request_id"] == response["ResponseMetadata"]["RequestId"] and body["function_name"] == name
    assert 0 < body["left"] <= 2000
    if strongest_server.isolation == "linux":
        assert body["task_root"] == "/var/task" and body["uid"] != 0
    assert "hello from ruby matz" in log and f"{body['request_id']} -- : logged" in log
    body, error, _, _ = invoke(lam, name, {"name": "again"})
    assert error is None and body["count"] == 2

    body, error, log, _ = invoke(lam, name, {"fail": True})
    assert error == "Unhandled"
    assert body["errorType"] == "Function<ArgumentError>" and body["errorMessage"] == "ruby boom"
    assert any("app.rb" in frame for frame in body["stackTrace"])

    body, error, log, _ = invoke(lam, name, {"sleep": True})
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"


def test_ruby_class_method_handler(lam, ruby):
    name = create_function(lam, {"shop.rb": RUBY_APP}, handler="shop.Shop::Orders.process", Runtime="ruby3.2")
    body, error, log, _ = invoke(lam, name, {"id": 42})
    assert error is None, (body, log)
    assert body == {"order": 42}


def test_ruby_init_error(lam, ruby):
    name = create_function(lam, {"app.rb": "def handler(event:, context:\n"}, handler="app.handler", Runtime="ruby3.4")
    body, error, log, _ = invoke(lam, name)
    assert error == "Unhandled" and body["errorType"] == "Init<SyntaxError>"
    assert "Phase: init\tStatus: error" in log


# --------------------------------------------------------------------------------------- Java

JAVA_HANDLER = """
package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.util.HashMap;
import java.util.Map;

public class Hello implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private int count = 0;

    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        count += 1;
        System.out.println("hello from java " + event.get("name"));
        context.getLogger().log("via the lambda logger");
        if (event.containsKey("fail")) {
            throw new IllegalStateException("java boom");
        }
        if (event.containsKey("sleep")) {
            try { Thread.sleep(20000); } catch (InterruptedException e) { }
        }
        Map<String, Object> out = new HashMap<>();
        out.put("count", count);
        out.put("event", event);
        out.put("requestId", context.getAwsRequestId());
        out.put("functionName", context.getFunctionName());
        out.put("memory", context.getMemoryLimitInMB());
        out.put("left", context.getRemainingTimeInMillis());
        return out;
    }
}
"""

JAVA_POJO = """
package example;

import com.amazonaws.services.lambda.runtime.Context;

public class Orders {
    public static class Order {
        public String id;
        public int quantity;
    }

    public static class Receipt {
        private final String text;
        public Receipt(String text) { this.text = text; }
        public String getText() { return text; }
    }

    public Receipt place(Order order, Context context) {
        return new Receipt(order.quantity + " x " + order.id);
    }
}
"""


@pytest.fixture(scope="module")
def java_classes(lam, tmp_path_factory):
    require(shutil.which("javac") is not None and shutil.which("java") is not None,
            "a JDK is not installed (apt install default-jdk-headless)")
    from squall.runtimes import java

    work = tmp_path_factory.mktemp("java")
    runtime_dir = java.build_runtime(work / "runtime")
    out = work / "classes"
    java.compile_handler({"example/Hello.java": JAVA_HANDLER, "example/Orders.java": JAVA_POJO}, runtime_dir, out)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.class")}


def test_java_request_handler(lam, java_classes):
    name = create_function(lam, java_classes, handler="example.Hello::handleRequest", Runtime="java17",
                           MemorySize=512, Timeout=5)
    body, error, log, response = invoke(lam, name, {"name": "duke"})
    assert error is None, (body, log)
    assert body["count"] == 1 and body["event"] == {"name": "duke"}
    assert body["requestId"] == response["ResponseMetadata"]["RequestId"] and body["functionName"] == name
    assert body["memory"] == 512 and 0 < body["left"] <= 5000
    assert "hello from java duke" in log and "via the lambda logger" in log
    assert "INIT_START Runtime Version: java:" in log
    body, error, _, _ = invoke(lam, name, {"name": "again"})
    assert error is None and body["count"] == 2

    body, error, log, _ = invoke(lam, name, {"fail": True})
    assert error == "Unhandled"
    assert body["errorType"] == "java.lang.IllegalStateException" and body["errorMessage"] == "java boom"
    assert any("example.Hello" in frame for frame in body["stackTrace"])

    body, error, log, _ = invoke(lam, name, {"sleep": True})
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"


def test_java_pojo_method_handler(lam, java_classes):
    name = create_function(lam, java_classes, handler="example.Orders::place", Runtime="java21", MemorySize=512)
    body, error, log, _ = invoke(lam, name, {"id": "tea", "quantity": 3})
    assert error is None, (body, log)
    assert body == {"text": "3 x tea"}


def test_java_class_not_found(lam, java_classes):
    name = create_function(lam, java_classes, handler="example.Nope::handleRequest", Runtime="java17", MemorySize=512)
    body, error, log, _ = invoke(lam, name)
    assert error == "Unhandled" and "Nope" in body["errorMessage"]
    assert "Phase: init\tStatus: error" in log
