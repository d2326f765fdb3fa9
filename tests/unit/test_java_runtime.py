"""The Java runtime (squall/runtimes/java): its build, and handlers driven over the Runtime API.

The runtime is built once per module; all handler sources compile in one javac run. Each
test starts a JVM through ``tests/runtime_harness.RuntimeSession``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest

from squall.runtimes import java
from tests.conftest import require
from tests.runtime_harness import RuntimeSession

HANDLERS = {
    "example/Hello.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import java.util.Map;

        public class Hello implements RequestHandler<Map<String, Object>, String> {
            private int calls;

            public String handleRequest(Map<String, Object> event, Context context) {
                calls++;
                System.out.println("hello stdout " + event.get("name"));
                StringBuilder types = new StringBuilder();
                for (Map.Entry<String, Object> e : event.entrySet()) {
                    Object v = e.getValue();
                    types.append(e.getKey()).append('=').append(v == null ? "null" : v.getClass().getSimpleName()).append(' ');
                }
                return "Hello " + event.get("name") + " #" + calls + " " + types.toString().trim();
            }
        }
    """,
    "example/Item.java": """
        package example;

        public class Item {
            public String sku;
            public int qty;
            public double price;
        }
    """,
    "example/Customer.java": """
        package example;

        public class Customer {
            private String name;
            private String email;

            public String getName() { return name; }
            public void setName(String name) { this.name = name; }
            public String getEmail() { return email; }
            public void setEmail(String email) { this.email = email; }
        }
    """,
    "example/Order.java": """
        package example;

        import java.util.List;
        import java.util.Map;

        public class Order {
            private String id;
            private Customer customer;
            private List<Item> items;
            private Map<String, Item> bySku;
            private boolean paid;
            public List<Long> tags;

            public String getId() { return id; }
            public void setId(String id) { this.id = id; }
            public Customer getCustomer() { return customer; }
            public void setCustomer(Customer customer) { this.customer = customer; }
            public List<Item> getItems() { return items; }
            public void setItems(List<Item> items) { this.items = items; }
            public Map<String, Item> getBySku() { return bySku; }
            public void setBySku(Map<String, Item> bySku) { this.bySku = bySku; }
            public boolean isPaid() { return paid; }
            public void setPaid(boolean paid) { this.paid = paid; }
        }
    """,
    "example/Receipt.java": """
        package example;

        import java.util.List;

        public class Receipt {
            private final String orderId;
            private final String customer;
            private final double total;
            private final List<String> lines;
            private final Item first;
            private String coupon; // null: left out of the JSON

            public Receipt(String orderId, String customer, double total, List<String> lines, Item first) {
                this.orderId = orderId;
                this.customer = customer;
                this.total = total;
                this.lines = lines;
                this.first = first;
            }

            public String getOrderId() { return orderId; }
            public String getCustomer() { return customer; }
            public double getTotal() { return total; }
            public List<String> getLines() { return lines; }
            public Item getFirst() { return first; }
            public String getCoupon() { return coupon; }
            public boolean isValid() { return true; }
        }
    """,
    "example/OrderHandler.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import java.util.ArrayList;
        import java.util.List;

        public class OrderHandler implements RequestHandler<Order, Receipt> {
            public Receipt handleRequest(Order order, Context context) {
                double total = 0;
                List<String> lines = new ArrayList<>();
                for (Item item : order.getItems()) {
                    total += item.qty * item.price;
                    lines.add(item.sku + " x" + item.qty);
                }
                lines.add("extra:" + order.getBySku().get("b").qty);
                lines.add("tags:" + order.tags + " paid:" + order.isPaid());
                return new Receipt(order.getId(), order.getCustomer().getName() + " <" + order.getCustomer().getEmail() + ">",
                        total, lines, order.getItems().get(0));
            }
        }
    """,
    "example/Methods.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import java.io.IOException;
        import java.io.InputStream;
        import java.io.OutputStream;
        import java.util.Map;

        public class Methods {
            public String greet(String name) {
                return "one-argument overload";
            }

            public String greet(String name, Context context) {
                return "Hi " + name + " from " + context.getFunctionName();
            }

            public static int twice(int n) {
                return 2 * n;
            }

            public void nothing(Map<String, Object> event) {
                System.out.println("nothing got " + event);
            }

            public void echo(InputStream in, OutputStream out) throws IOException {
                out.write("echo:".getBytes());
                in.transferTo(out);
            }
        }
    """,
    "example/Upper.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestStreamHandler;
        import java.io.IOException;
        import java.io.InputStream;
        import java.io.OutputStream;
        import java.nio.charset.StandardCharsets;

        public class Upper implements RequestStreamHandler {
            public void handleRequest(InputStream in, OutputStream out, Context context) throws IOException {
                String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                out.write(text.toUpperCase().getBytes(StandardCharsets.UTF_8));
            }
        }
    """,
    "example/Probe.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.ClientContext;
        import com.amazonaws.services.lambda.runtime.CognitoIdentity;
        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import java.util.LinkedHashMap;
        import java.util.Map;

        public class Probe implements RequestHandler<Object, Map<String, Object>> {
            public Map<String, Object> handleRequest(Object event, Context context) {
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("requestId", context.getAwsRequestId());
                out.put("functionName", context.getFunctionName());
                out.put("functionVersion", context.getFunctionVersion());
                out.put("arn", context.getInvokedFunctionArn());
                out.put("memory", context.getMemoryLimitInMB());
                out.put("logGroup", context.getLogGroupName());
                out.put("logStream", context.getLogStreamName());
                out.put("remaining", context.getRemainingTimeInMillis());
                out.put("loggerSet", context.getLogger() != null);
                out.put("trace", System.getProperty("com.amazonaws.xray.traceHeader"));
                CognitoIdentity identity = context.getIdentity();
                if (identity != null) {
                    out.put("identityId", identity.getIdentityId());
                    out.put("identityPoolId", identity.getIdentityPoolId());
                }
                ClientContext client = context.getClientContext();
                if (client != null) {
                    out.put("installationId", client.getClient().getInstallationId());
                    out.put("appTitle", client.getClient().getAppTitle());
                    out.put("custom", client.getCustom());
                    out.put("env", client.getEnvironment());
                }
                out.put("event", event);
                return out;
            }
        }
    """,
    "example/Failing.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import java.util.Map;

        public class Failing implements RequestHandler<Map<String, Object>, String> {
            public String handleRequest(Map<String, Object> event, Context context) {
                if (event.containsKey("ok")) {
                    return "fine";
                }
                try {
                    Integer.parseInt("x" + event.get("n"));
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("bad input " + event.get("n"), e);
                }
                return "unreachable";
            }
        }
    """,
    "example/BadCtor.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;

        public class BadCtor implements RequestHandler<String, String> {
            public BadCtor() {
                throw new IllegalStateException("missing configuration");
            }

            public String handleRequest(String input, Context context) {
                return input;
            }
        }
    """,
    "example/Logs.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.LambdaRuntime;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import com.amazonaws.services.lambda.runtime.logging.LogLevel;

        public class Logs implements RequestHandler<String, String> {
            static {
                LambdaRuntime.getLogger().log("static init log");
            }

            public String handleRequest(String input, Context context) {
                System.out.print("partial line without newline");
                System.err.println("to stderr: " + input);
                context.getLogger().log("logger says " + input);
                context.getLogger().log("a warning", LogLevel.WARN);
                return input;
            }
        }
    """,
    "example/Codec.java": """
        package example;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import java.lang.reflect.Type;
        import java.math.BigDecimal;
        import java.time.LocalDate;
        import java.util.ArrayList;
        import java.util.Date;
        import java.util.LinkedHashMap;
        import java.util.List;
        import java.util.Map;
        import java.util.Optional;
        import java.util.Set;
        import squall.runtime.Json;

        /** Reads each case's JSON into the type of the field it names, and writes it back. */
        public class Codec implements RequestHandler<List<Map<String, String>>, List<String>> {
            public enum Color { RED, GREEN }

            public record Point(int x, int y, String label) {}

            public static class Box<T> {
                public T value;
                public List<T> more;
            }

            public static class Bean {
                private String URL;
                private Integer count;
                private final List<String> names = new ArrayList<>();
                public String getURL() { return URL; }
                public void setURL(String url) { this.URL = url; }
                public Integer getCount() { return count; }
                public void setCount(Integer count) { this.count = count; }
                public List<String> getNames() { return names; }
            }

            public static Object object;
            public static String string;
            public static int primitiveInt;
            public static Long boxedLong;
            public static boolean bool;
            public static double dbl;
            public static BigDecimal decimal;
            public static List<Integer> ints;
            public static int[] intArray;
            public static Set<String> stringSet;
            public static Map<String, List<Long>> mapOfLists;
            public static Map<Integer, String> intKeys;
            public static Color color;
            public static List<Color> colors;
            public static Optional<String> optional;
            public static byte[] bytes;
            public static Point point;
            public static Box<Point> box;
            public static Bean bean;
            public static LocalDate localDate;
            public static Date date;

            public List<String> handleRequest(List<Map<String, String>> cases, Context context) {
                List<String> out = new ArrayList<>();
                for (Map<String, String> c : cases) {
                    try {
                        if (c.containsKey("write")) {
                            out.add(Json.write(sample(c.get("write"))));
                            continue;
                        }
                        Type type = Codec.class.getField(c.get("field")).getGenericType();
                        Object value = Json.read(c.get("json"), type);
                        out.add(Json.write(value) + " " + (value == null ? "null" : value.getClass().getSimpleName()));
                    } catch (Exception e) {
                        out.add("error: " + e.getClass().getSimpleName());
                    }
                }
                return out;
            }

            private static Object sample(String name) {
                Map<String, Object> m = new LinkedHashMap<>();
                switch (name) {
                    case "escapes": return "q\\"b\\\\s\\n\\t\\u0001 é 😀 </script>";
                    case "specials":
                        m.put("nan", Double.NaN);
                        m.put("inf", Float.POSITIVE_INFINITY);
                        m.put("nullValue", null);
                        m.put("big", new BigDecimal("12.50"));
                        m.put("long", Long.MAX_VALUE);
                        m.put("chars", new char[] {'h', 'i'});
                        m.put("bytes", new byte[] {1, 2, 3});
                        m.put("color", Color.GREEN);
                        m.put("array", new int[] {1, 2});
                        m.put("optional", Optional.of("x"));
                        m.put("date", new Date(1700000000123L));
                        m.put("localDate", LocalDate.of(2024, 2, 29));
                        return m;
                    case "record": return new Point(1, 2, null);
                    case "bean":
                        Bean b = new Bean();
                        b.setURL("http://x");
                        b.getNames().add("a");
                        return b;
                    default: return null;
                }
            }
        }
    """,
}

LIB_DEP = {
    "example/dep/Shout.java": """
        package example.dep;

        public final class Shout {
            public static String loud(String s) { return s.toUpperCase() + "!"; }
        }
    """,
}

LIB_HANDLER = {
    "example/lib/Greeter.java": """
        package example.lib;

        import com.amazonaws.services.lambda.runtime.Context;
        import com.amazonaws.services.lambda.runtime.RequestHandler;
        import example.dep.Shout;
        import java.util.Map;

        public class Greeter implements RequestHandler<Map<String, String>, String> {
            public String handleRequest(Map<String, String> event, Context context) {
                return Shout.loud("hello " + event.get("name"));
            }
        }
    """,
}


def _dedent(sources: dict[str, str]) -> dict[str, str]:
    import textwrap

    return {path: textwrap.dedent(text) for path, text in sources.items()}


@pytest.fixture(scope="module")
def jdk() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("java", "javac", "jar")}
    require(all(tools.values()), "a JDK (java, javac, jar) is needed: apt install default-jdk-headless")
    return tools  # type: ignore[return-value]


@pytest.fixture(scope="module")
def runtime_dir(jdk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return java.build_runtime(tmp_path_factory.mktemp("java-cache"), jdk["javac"], jdk["jar"])


@pytest.fixture(scope="module")
def code_dir(runtime_dir: Path, jdk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("java-code")
    java.compile_handler(_dedent(HANDLERS), runtime_dir, out, jdk["javac"])
    return out


def _jar(classes: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(classes.rglob("*.class")):
            zf.write(path, path.relative_to(classes).as_posix())


@pytest.fixture(scope="module")
def lib_code_dir(runtime_dir: Path, jdk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A function laid out as Gradle/Maven zips are: no classes at the root, jars in lib/."""
    work = tmp_path_factory.mktemp("java-lib-build")
    java.compile_handler(_dedent(LIB_DEP), runtime_dir, work / "dep", jdk["javac"])
    java.compile_handler(_dedent(LIB_HANDLER), runtime_dir, work / "handler", jdk["javac"], classpath=[work / "dep"])
    code = tmp_path_factory.mktemp("java-lib-code")
    _jar(work / "dep", code / "lib" / "a-dep.jar")
    _jar(work / "handler", code / "lib" / "function.jar")
    return code


def _start(runtime_dir: Path, code_dir: Path, handler: str, **kwargs):
    return RuntimeSession.start(java.command(shutil.which("java") or "java", str(runtime_dir)), code_dir, handler, **kwargs)


async def _output_with(rt: RuntimeSession, *texts: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while not all(t in rt.output for t in texts) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return rt.output


# ---- build --------------------------------------------------------------------------------


def test_build_is_cached_and_world_readable(runtime_dir: Path, jdk) -> None:
    jar_file = runtime_dir / java.JAR_NAME
    before = jar_file.stat()
    # A second build must not run jar (nor javac): a missing jar tool proves it.
    again = java.build_runtime(runtime_dir.parent, jdk["javac"], "no-such-jar-tool")
    assert again == runtime_dir
    after = jar_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o755
    for path in runtime_dir.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    with zipfile.ZipFile(jar_file) as zf:
        names = set(zf.namelist())
    assert "com/amazonaws/services/lambda/runtime/RequestHandler.class" in names
    assert "squall/runtime/Bootstrap.class" in names
    assert [p.name for p in runtime_dir.parent.iterdir()] == [runtime_dir.name]  # no leftovers


def test_concurrent_builds_share_one_directory(jdk, tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(java.build_runtime(tmp_path, jdk["javac"], jdk["jar"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]
    assert (results[0] / java.JAR_NAME).is_file()


def test_missing_or_failing_javac_is_a_clear_error(runtime_dir: Path, jdk, tmp_path: Path) -> None:
    with pytest.raises(java.JavaBuildError, match="apt install default-jdk-headless"):
        java.build_runtime(tmp_path, "no-such-javac-binary")
    with pytest.raises(java.JavaBuildError, match="Broken.java") as info:
        java.compile_handler({"x/Broken.java": "package x; class Broken { int f( }"}, runtime_dir, tmp_path / "out", jdk["javac"])
    assert isinstance(info.value, RuntimeError)


def test_command_refers_to_the_jar_through_runtime_dir() -> None:
    argv = java.command("/usr/bin/java", "/var/runtime")
    assert argv[0] == "/usr/bin/java"
    assert argv[-1] == java.MAIN_CLASS
    assert "/var/runtime/squall-runtime.jar" in argv
    assert all(str(java.SOURCES.parent) not in arg for arg in argv)
    assert "-XX:+UseSerialGC" in argv


# ---- handlers -----------------------------------------------------------------------------


def test_map_handler_returning_string_keeps_state(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Hello") as rt:
            assert await rt.init() is None
            first = await rt.invoke({"name": "Ada", "int": 1, "long": 12345678901, "dbl": 1.5,
                                     "flag": True, "list": [1], "obj": {"a": None}, "nil": None})
            assert first.ok, first
            assert json.loads(first.body) == ("Hello Ada #1 name=String int=Integer long=Long dbl=Double "
                                              "flag=Boolean list=ArrayList obj=LinkedHashMap nil=null")
            second = await rt.invoke({"name": "Bob"})
            assert json.loads(second.body) == "Hello Bob #2 name=String"
            assert second.body == b'"Hello Bob #2 name=String"'  # a String result is a JSON string
            output = await _output_with(rt, "hello stdout Bob")
            assert "hello stdout Ada" in output

    asyncio.run(scenario())


def test_pojo_in_and_out(runtime_dir: Path, code_dir: Path) -> None:
    order = {
        "id": "o-1",
        "customer": {"name": "Ada", "email": "ada@example.com", "unknown": [1, 2]},
        "items": [{"sku": "a", "qty": 2, "price": 1.25}, {"sku": "b", "qty": "3", "price": 10}],
        "bySku": {"b": {"sku": "b", "qty": 7, "price": 0}},
        "paid": True,
        "tags": [1, 2],
        "ignored": {"deep": True},
    }

    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.OrderHandler") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke(order)
            assert outcome.ok, outcome
            receipt = json.loads(outcome.body)
            assert receipt == {
                "orderId": "o-1",
                "customer": "Ada <ada@example.com>",
                "total": 32.5,
                "lines": ["a x2", "b x3", "extra:7", "tags:[1, 2] paid:true"],
                "first": {"sku": "a", "qty": 2, "price": 1.25},
                "valid": True,
            }
            assert list(receipt) == ["orderId", "customer", "total", "lines", "first", "valid"]  # field order; null coupon left out
            bad = await rt.invoke(raw=b'{"id": "o-2", "items": {"not": "a list item"')
            assert not bad.ok
            assert bad.error_type == "java.lang.RuntimeException"
            assert json.loads(bad.body)["errorMessage"] == "An error occurred during JSON parsing"

    asyncio.run(scenario())


def test_method_handlers_follow_aws_overload_rules(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Methods::greet", function_name="greeter") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke("world")  # a JSON string event arrives as the String
            assert json.loads(outcome.body) == "Hi world from greeter"  # (String, Context) wins
            wrong = await rt.invoke({"an": "object"})
            assert not wrong.ok and json.loads(wrong.body)["errorMessage"] == "An error occurred during JSON parsing"
        async with _start(runtime_dir, code_dir, "example.Methods::twice") as rt:
            assert await rt.init() is None
            assert (await rt.invoke(21)).body == b"42"
        async with _start(runtime_dir, code_dir, "example.Methods::nothing") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"k": 1})
            assert outcome.ok and outcome.body == b"null"
            assert "nothing got {k=1}" in await _output_with(rt, "nothing got")
        async with _start(runtime_dir, code_dir, "example.Methods::echo") as rt:
            assert await rt.init() is None
            assert (await rt.invoke(raw=b"raw \xc3\xa9 bytes")).body == "echo:raw é bytes".encode()

    asyncio.run(scenario())


def test_request_stream_handler(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Upper") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke(raw=b'{"msg": "shout"}')
            assert outcome.ok and outcome.body == b'{"MSG": "SHOUT"}'
            assert (await rt.invoke(raw=b"")).body == b""

    asyncio.run(scenario())


def test_handler_and_dependency_in_lib_jars(runtime_dir: Path, lib_code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, lib_code_dir, "example.lib.Greeter::handleRequest") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"name": "jar"})
            assert json.loads(outcome.body) == "HELLO JAR!"

    asyncio.run(scenario())


def test_context_fields(runtime_dir: Path, code_dir: Path) -> None:
    client_context = {"client": {"installation_id": "inst-1", "app_title": "App"}, "custom": {"k": "v"},
                      "env": {"platform": "Android"}}
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:probe:live"

    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Probe", function_name="probe", memory_mb=256) as rt:
            assert await rt.init() is None
            outcome = await rt.invoke([1, "two"], request_id="req-123", timeout_ms=30_000, arn=arn,
                                      client_context=json.dumps(client_context), cognito_identity=json.dumps(identity))
            got = json.loads(outcome.body)
            assert 0 < got.pop("remaining") <= 30_000
            assert got == {
                "requestId": "req-123",
                "functionName": "probe",
                "functionVersion": "$LATEST",
                "arn": arn,
                "memory": 256,
                "logGroup": "/aws/lambda/probe",
                "logStream": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
                "loggerSet": True,
                "trace": "Root=1-00000000-req123;Sampled=0",
                "identityId": "id-1",
                "identityPoolId": "pool-1",
                "installationId": "inst-1",
                "appTitle": "App",
                "custom": {"k": "v"},
                "env": {"platform": "Android"},
                "event": [1, "two"],
            }
            plain = json.loads((await rt.invoke(None)).body)
            assert "identityId" not in plain and "installationId" not in plain and plain["event"] == {}

    asyncio.run(scenario())


def test_exception_is_logged_then_reported_with_its_stack(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Failing") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"n": 7})
            assert not outcome.ok
            assert outcome.error_type == "java.lang.IllegalArgumentException"
            error = json.loads(outcome.body)
            assert set(error) == {"errorMessage", "errorType", "stackTrace"}
            assert error["errorMessage"] == "bad input 7"
            assert error["errorType"] == "java.lang.IllegalArgumentException"
            assert error["stackTrace"][0].startswith("example.Failing.handleRequest(Failing.java:")
            assert not any("squall.runtime" in frame for frame in error["stackTrace"])
            output = await _output_with(rt, "Caused by")
            assert "bad input 7: java.lang.IllegalArgumentException\njava.lang.IllegalArgumentException: bad input 7" in output
            assert "Caused by: java.lang.NumberFormatException" in output
            assert "squall.runtime" not in output
            assert (await rt.invoke({"ok": 1})).body == b'"fine"'  # still serving

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("handler", "message", "error_type"),
    [
        ("example.Nope", "Class not found: example.Nope", "java.lang.ClassNotFoundException"),
        ("example.Hello::nope", "No public method named nope with appropriate method signature found on class example.Hello",
         "Runtime.BadFunctionCode"),
        ("example.Item", "Class does not implement an appropriate handler interface: example.Item", "Runtime.BadFunctionCode"),
        ("example.BadCtor", "missing configuration", "java.lang.IllegalStateException"),
    ],
)
def test_init_errors(runtime_dir: Path, code_dir: Path, handler: str, message: str, error_type: str) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, handler) as rt:
            outcome = await rt.init()
            assert outcome is not None and not outcome.ok
            assert outcome.error_type == error_type
            assert json.loads(outcome.body)["errorMessage"] == message
            assert await asyncio.wait_for(rt.proc.wait(), 10) == 1
            assert message in rt.output

    asyncio.run(scenario())


def test_output_is_flushed_and_logger_writes_lines(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Logs") as rt:
            assert await rt.init() is None
            assert (await rt.invoke("abc")).body == b'"abc"'
            output = await _output_with(rt, "partial line without newline", "logger says abc", "[WARN] a warning")
            assert "static init log\n" in output
            assert "to stderr: abc\n" in output
            assert "logger says abc\n" in output
        async with _start(runtime_dir, code_dir, "example.Logs", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"}) as rt:
            assert await rt.init() is None
            await rt.invoke("xyz", request_id="req-json")
            output = await _output_with(rt, "logger says xyz")
            # the handler's print() left its line open: the logger's JSON follows on it
            lines = [json.loads(line[line.index('{"timestamp"'):]) for line in output.splitlines() if "logger says" in line]
            assert lines[0]["message"] == "logger says xyz"
            assert lines[0]["AWSRequestId"] == "req-json"
            assert lines[0]["timestamp"].endswith("Z")

    asyncio.run(scenario())


def test_process_exits_when_the_api_is_gone(runtime_dir: Path, code_dir: Path) -> None:
    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Hello") as rt:
            assert await rt.init() is None
            await rt.api.close()
            assert await asyncio.wait_for(rt.proc.wait(), 10) == 1

    asyncio.run(scenario())


# ---- JSON codec ---------------------------------------------------------------------------

READ_CASES = [
    ("object", '[1, 2147483648, 9223372036854775808, 1.5, -0, 1e2, "s", true, null]',
     '[1,2147483648,9223372036854775808,1.5,0,100.0,"s",true,null] ArrayList'),
    ("object", "{'single': 'quotes', unquoted: NaN, \"esc\": \"\\u00e9\\/\\q\"}",
     '{"single":"quotes","unquoted":"NaN","esc":"é/q"} LinkedHashMap'),
    ("object", '{"a": [1, {"b": []}]} trailing', '{"a":[1,{"b":[]}]} LinkedHashMap'),
    ("object", '{"a": 1', "error: JsonException"),
    ("object", "[1,]", "error: JsonException"),
    ("string", '"line\\nbreak"', '"line\\nbreak" String'),
    ("string", "42", '"42" String'),
    ("string", '["only"]', '"only" String'),
    ("string", '{"a": 1}', "error: JsonException"),
    ("primitiveInt", '"17"', "17 Integer"),
    ("primitiveInt", "3.9", "3 Integer"),
    ("primitiveInt", "null", "0 Integer"),
    ("primitiveInt", "4294967296", "error: JsonException"),
    ("boxedLong", "null", "null null"),
    ("bool", '"true"', "true Boolean"),
    ("dbl", "1e3", "1000.0 Double"),
    ("decimal", "0.10000000000000000001", "0.10000000000000000001 BigDecimal"),
    ("ints", '[1, "2", 3.7]', "[1,2,3] ArrayList"),
    ("ints", "5", "[5] ArrayList"),
    ("intArray", "[4, 5]", "[4,5] int[]"),
    ("stringSet", '["a", "a"]', '["a"] HashSet'),
    ("mapOfLists", '{"k": [1, 2], "z": 3}', '{"k":[1,2],"z":[3]} LinkedHashMap'),
    ("intKeys", '{"1": "one"}', '{"1":"one"} LinkedHashMap'),
    ("color", '"GREEN"', '"GREEN" Color'),
    ("color", '"PURPLE"', "null null"),
    ("colors", '["RED", 1]', '["RED","GREEN"] ArrayList'),
    ("optional", '"x"', '"x" Optional'),
    ("bytes", '"AQID"', '"AQID" byte[]'),
    ("point", '{"x": 1, "y": 2, "label": "p", "extra": 0}', '{"x":1,"y":2,"label":"p"} Point'),
    ("box", '{"value": {"x": 3}, "more": [{"y": 4}]}', '{"value":{"x":3,"y":0},"more":[{"x":0,"y":4}]} Box'),
    ("bean", '{"URL": "u", "count": "5", "names": ["ignored: no setter"]}', '{"URL":"u","count":5,"names":[]} Bean'),
    ("bean", '""', "null null"),
    ("localDate", '"2024-02-29"', "[2024,2,29] LocalDate"),
    ("date", "1700000000123", "1700000000123 Date"),
]

WRITE_CASES = [
    ("escapes", '"q\\"b\\\\s\\n\\t\\u0001 é 😀 </script>"'),
    ("specials", '{"nan":"NaN","inf":"Infinity","nullValue":null,"big":12.50,"long":9223372036854775807,'
                 '"chars":"hi","bytes":"AQID","color":"GREEN","array":[1,2],"optional":"x",'
                 '"date":1700000000123,"localDate":[2024,2,29]}'),
    ("record", '{"x":1,"y":2}'),
    ("bean", '{"URL":"http://x","names":["a"]}'),
]


def test_json_codec(runtime_dir: Path, code_dir: Path) -> None:
    cases = [{"field": f, "json": j} for f, j, _ in READ_CASES] + [{"write": name} for name, _ in WRITE_CASES]
    expected = [e for _, _, e in READ_CASES] + [e for _, e in WRITE_CASES]

    async def scenario() -> None:
        async with _start(runtime_dir, code_dir, "example.Codec") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke(cases)
            assert outcome.ok, outcome
            got = json.loads(outcome.body)
            mismatches = [(case, e, g) for case, e, g in zip(cases, expected, got) if e != g]
            assert not mismatches, "\n".join(f"{c}: expected {e!r}, got {g!r}" for c, e, g in mismatches)

    asyncio.run(scenario())


def test_init_error_when_handler_class_fails_static_init(runtime_dir: Path, code_dir: Path, tmp_path: Path, jdk) -> None:
    java.compile_handler({"broken/Static.java": """
        package broken;
        public class Static implements com.amazonaws.services.lambda.runtime.RequestStreamHandler {
            static final int X = Integer.parseInt("not a number");
            public void handleRequest(java.io.InputStream i, java.io.OutputStream o,
                                      com.amazonaws.services.lambda.runtime.Context c) {}
        }
    """}, runtime_dir, tmp_path, jdk["javac"])

    async def scenario() -> None:
        async with _start(runtime_dir, tmp_path, "broken.Static") as rt:
            outcome = await rt.init()
            assert outcome is not None
            assert outcome.error_type == "java.lang.ExceptionInInitializerError"
            assert json.loads(outcome.body)["errorMessage"] == "Error loading class broken.Static"
            output = await _output_with(rt, "NumberFormatException")
            assert "Caused by: java.lang.NumberFormatException" in output

    asyncio.run(scenario())
