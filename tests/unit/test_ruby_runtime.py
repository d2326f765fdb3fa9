"""The Ruby runtime (squall/runtimes/ruby/bootstrap.rb), driven through the Runtime API.

Each test starts ``ruby bootstrap.rb`` with Lambda's environment against an in-process
:class:`RuntimeApi` (tests/runtime_harness.py), as the engine does. Expected shapes follow
AWS's Ruby runtime (aws_lambda_ric): errorType ``Function<Class>`` / ``Init<Class>``,
stackTrace entries ``"/path/file.rb:LINE:in `method'"``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest

import squall.runtimes.ruby as ruby_runtime
from squall.runtimes.registry import Runtime
from tests.conftest import require
from tests.runtime_harness import RuntimeSession

BOOTSTRAP = Path(ruby_runtime.__file__).resolve().parent / "bootstrap.rb"
RUBY = shutil.which("ruby") or "/usr/bin/ruby"


@pytest.fixture
def code(tmp_path: Path):
    """Write a function's files (dedented) into a fresh code directory."""
    require(shutil.which(RUBY) is not None, "ruby is not installed")

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return tmp_path

    return write


# How the interpreter starts: as the engine starts it; or as RubyGems is loaded, at start
# (plain `ruby`) or on first need (`ruby --disable-gems`, see bootstrap.rb).
GEM_MODES = [pytest.param((), id="rubygems-at-start"), pytest.param(("--disable-gems",), id="rubygems-on-demand")]


def ruby_argv(options: tuple[str, ...] | None = None) -> list[str]:
    if options is None:
        return list(Runtime("ruby3.3", "ruby", RUBY, "3.3.0").launch(Path.cwd(), 128).argv)
    return [RUBY, *options, str(BOOTSTRAP)]


def session(code_dir: Path, handler: str, options: tuple[str, ...] | None = None, **kwargs):
    return RuntimeSession.start(ruby_argv(options), code_dir, handler, **kwargs)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def exit_status(rt, timeout: float = 10) -> int:
    return await asyncio.wait_for(rt.proc.wait(), timeout)


def test_top_level_handler_and_puts(code):
    code_dir = code({"function.rb": """
        require 'json'
        def handler(event:, context:)
          puts "got #{event['name']}"
          $stdout.print "no newline"
          $stdout.puts
          { 'hello' => event['name'], 'items' => [1, 2.5, nil, true] }
        end
    """})

    async def main():
        async with session(code_dir, "function.handler") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"name": "ruby"})
            assert outcome.ok, outcome
            assert outcome.content_type == "application/json"
            assert json.loads(outcome.body) == {"hello": "ruby", "items": [1, 2.5, None, True]}
            second = await rt.invoke({"name": None})
            assert json.loads(second.body)["hello"] is None
            await asyncio.sleep(0.1)
            assert "got ruby\nno newline\n" in rt.output

    run(main())


def test_nested_directory_handler(code):
    code_dir = code({
        "src/handlers/app.rb": """
            require_relative 'helper'
            def handle(event:, context:)
              Helper.double(event['n'])
            end
        """,
        "src/handlers/helper.rb": """
            module Helper
              def self.double(n) = n * 2
            end
        """,
    })

    async def main():
        async with session(code_dir, "src/handlers/app.handle") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"n": 21})
            assert outcome.ok, outcome
            assert json.loads(outcome.body) == 42

    run(main())


def test_module_class_method_handlers(code):
    code_dir = code({"app.rb": """
        module Outer
          class Inner
            def self.process(event:, context:)
              "deep #{event['msg']} #{context.function_name}"
            end
          end
        end
        class Flat
          def self.process(event:, context:)
            { 'flat' => event['msg'] }
          end
        end
    """})

    async def main():
        async with session(code_dir, "app.Outer::Inner.process", function_name="deepfn") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"msg": "hi"})
            assert outcome.ok, outcome
            assert json.loads(outcome.body) == "deep hi deepfn"
        async with session(code_dir, "app.Flat.process") as rt:
            assert await rt.init() is None
            assert json.loads((await rt.invoke({"msg": "x"})).body) == {"flat": "x"}

    run(main())


def test_context_fields(code):
    code_dir = code({"ctx.rb": """
        def handler(event:, context:)
          {
            'aws_request_id' => context.aws_request_id,
            'invoked_function_arn' => context.invoked_function_arn,
            'function_name' => context.function_name,
            'function_version' => context.function_version,
            'memory_limit_in_mb' => context.memory_limit_in_mb,
            'log_group_name' => context.log_group_name,
            'log_stream_name' => context.log_stream_name,
            'deadline_ms' => context.deadline_ms,
            'remaining' => context.get_remaining_time_in_millis,
            'identity' => context.identity,
            'client_context' => context.client_context,
            'trace' => ENV['_X_AMZN_TRACE_ID'],
            'class' => context.class.name,
          }
        end
    """})
    client_context = {
        "client": {"installation_id": "id1234", "app_title": "title", "app_version_name": "alpha",
                   "app_version_code": "9.9", "app_package_name": "pname"},
        "custom": {"a": "1", "é": "ü"},
        "env": {"make": "samsung"},
    }
    identity = {"cognitoIdentityId": "4ab95ea5", "cognitoIdentityPoolId": "35ab4794"}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:ctxfn:live"

    async def main():
        async with session(code_dir, "ctx.handler", function_name="ctxfn", memory_mb=256) as rt:
            assert await rt.init() is None
            before = int(time.time() * 1000)
            outcome = await rt.invoke({}, request_id="req-1", timeout_ms=30_000, arn=arn,
                                      client_context=json.dumps(client_context),
                                      cognito_identity=json.dumps(identity))
            assert outcome.ok, outcome
            doc = json.loads(outcome.body)
            assert doc["aws_request_id"] == "req-1"
            assert doc["invoked_function_arn"] == arn
            assert doc["function_name"] == "ctxfn"
            assert doc["function_version"] == "$LATEST"
            assert doc["memory_limit_in_mb"] == "256"  # a String, as in AWS's runtime
            assert doc["log_group_name"] == "/aws/lambda/ctxfn"
            assert doc["log_stream_name"].startswith("2026/01/01/[$LATEST]")
            assert before + 29_000 <= doc["deadline_ms"] <= before + 31_000
            assert 0 < doc["remaining"] <= 30_000
            assert doc["identity"] == identity
            assert doc["client_context"] == client_context
            assert doc["trace"].startswith("Root=1-")
            assert doc["class"] == "LambdaContext"

            # without the optional headers; an expired deadline reads 0 ms remaining
            second = json.loads((await rt.invoke({}, request_id="req-2", timeout_ms=-5000)).body)
            assert second["aws_request_id"] == "req-2"
            assert second["identity"] is None and second["client_context"] is None
            assert second["remaining"] == 0
            assert second["trace"] != doc["trace"]

    run(main())


def test_handler_error_is_posted_and_logged(code):
    code_dir = code({"function.rb": """
        class OrderError < StandardError; end  # (line 2: the text starts with a newline)

        $calls = 0

        def validate(event)
          raise OrderError, "bad order #{event['id']}"
        end

        def handler(event:, context:)
          $calls += 1
          return { 'calls' => $calls } if event['ok']
          validate(event)
        end

        def type_error(event:, context:)
          [1, 2, 3].first("two")
        end
    """})

    async def main():
        async with session(code_dir, "function.handler") as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({"id": 7})
            assert not outcome.ok
            assert outcome.error_type == "Function<OrderError>"
            doc = json.loads(outcome.body)
            assert doc["errorType"] == "Function<OrderError>"
            assert doc["errorMessage"] == "bad order 7"
            trace = doc["stackTrace"]
            assert re.fullmatch(r".*/function\.rb:7:in `validate'", trace[0]), trace
            assert re.fullmatch(r".*/function\.rb:13:in `handler'", trace[1]), trace
            assert not any("runtimes/ruby" in frame for frame in trace), trace  # runtime frames are cut
            # the process keeps serving, with its state
            assert json.loads((await rt.invoke({"ok": True})).body) == {"calls": 2}
            await asyncio.sleep(0.1)
            assert "Error raised from handler method\n{\n" in rt.output
            assert '"errorType": "Function<OrderError>"' in rt.output
        async with session(code_dir, "function.type_error") as rt:
            assert await rt.init() is None
            doc = json.loads((await rt.invoke({})).body)
            assert doc["errorType"] == "Function<TypeError>"
            assert doc["errorMessage"] == "no implicit conversion of String into Integer"

    run(main())


@pytest.mark.parametrize("files, handler, error_type, message", [
    ({"function.rb": "def handler(event:, context:) = 1\n"}, "missing.handler", "Init<LoadError>",
     "cannot load such file"),
    ({"function.rb": "def handler(event:, context:)\n  if true\nend\n"}, "function.handler",
     "Init<SyntaxError>", "syntax error"),
    ({"function.rb": "require 'no_such_gem_here'\n"}, "function.handler", "Init<LoadError>",
     "no_such_gem_here"),
    ({"function.rb": "raise 'config missing'\n"}, "function.handler", "Init<RuntimeError>",
     "config missing"),
    ({"function.rb": "def handler(event:, context:) = 1\n"}, "function", "Init<ArgumentError>",
     "Invalid handler"),
])
def test_init_errors(code, files, handler, error_type, message):
    code_dir = code(files)

    async def main():
        async with session(code_dir, handler) as rt:
            outcome = await rt.init()
            assert outcome is not None and not outcome.ok
            assert outcome.error_type == error_type
            doc = json.loads(outcome.body)
            assert doc["errorType"] == error_type
            assert message in doc["errorMessage"]
            assert isinstance(doc["stackTrace"], list)
            assert await exit_status(rt) != 0
            assert f"Init error when loading handler {handler}" in rt.output

    run(main())


@pytest.mark.parametrize("handler, error_type, message", [
    ("function.nope", "Function<NoMethodError>", "undefined method `nope'"),
    ("function.Does::Not::Exist.handler", "Function<NameError>", "uninitialized constant Does"),
    ("function.Empty.process", "Function<NoMethodError>", "undefined method `process'"),
])
def test_missing_method_or_class_fails_the_first_invoke(code, handler, error_type, message):
    # As on AWS: the file loads at init; the method/class lookup happens on invoke, and
    # NoMethodError / NameError are critical: the error is posted, then the runtime exits.
    code_dir = code({"function.rb": "class Empty; end\ndef handler(event:, context:) = 1\n"})

    async def main():
        async with session(code_dir, handler) as rt:
            assert await rt.init() is None
            outcome = await rt.invoke({})
            assert outcome.error_type == error_type
            assert message in json.loads(outcome.body)["errorMessage"]
            assert await exit_status(rt) == 255
            assert "Critical exception from handler" in rt.output

    run(main())


def test_state_across_invokes_and_logger(code):
    code_dir = code({"function.rb": """
        require 'logger'
        LOGGER = Logger.new($stdout)
        $cache = {}
        INIT_AT = Process.pid

        def handler(event:, context:)
          $cache[event['k']] = event['v']
          LOGGER.info("stored #{event['k']}")
          { 'cache' => $cache, 'pid' => INIT_AT }
        end
    """})

    async def main():
        async with session(code_dir, "function.handler") as rt:
            assert await rt.init() is None
            first = json.loads((await rt.invoke({"k": "a", "v": 1}, request_id="rid-a")).body)
            second = json.loads((await rt.invoke({"k": "b", "v": 2}, request_id="rid-b")).body)
            assert first["cache"] == {"a": 1}
            assert second["cache"] == {"a": 1, "b": 2}
            assert first["pid"] == second["pid"] == rt.proc.pid
            await asyncio.sleep(0.1)
            # AWS's Ruby runtime puts the request id into Logger lines written to stdout
            assert re.search(r"^I, \[\S+ #\d+\]  INFO rid-a -- : stored a$", rt.output, re.M), rt.output
            assert re.search(r"^I, \[\S+ #\d+\]  INFO rid-b -- : stored b$", rt.output, re.M), rt.output

    run(main())


@pytest.mark.parametrize("options", GEM_MODES)
def test_vendored_gem_on_load_path(code, options):
    code_dir = code({
        "vendor/bundle/ruby/3.2.0/gems/greeter-1.2.0/lib/greeter.rb": """
            require 'greeter/version'
            module Greeter
              def self.greet(name) = "hello #{name} from greeter #{VERSION}"
            end
        """,
        "vendor/bundle/ruby/3.2.0/gems/greeter-1.2.0/lib/greeter/version.rb": """
            module Greeter
              VERSION = '1.2.0'
            end
        """,
        "app.rb": """
            require 'greeter'
            def handler(event:, context:)
              return Greeter.greet(event['name']) unless event['gems']

              loaded = $LOADED_FEATURES.any? { |f| f.end_with?('/rubygems.rb') }
              { 'rubygems_was_loaded' => loaded, 'gem_path' => Gem.path }
            end
        """,
    })

    async def main():
        async with session(code_dir, "app.handler", options) as rt:
            assert await rt.init() is None, rt.output
            outcome = await rt.invoke({"name": "ann"})
            assert outcome.ok, outcome
            assert json.loads(outcome.body) == "hello ann from greeter 1.2.0"
            gems = json.loads((await rt.invoke({"gems": True})).body)
            # on demand: the load path served the vendored gem without RubyGems
            assert gems["rubygems_was_loaded"] == (options == ()), gems
            assert str(code_dir / "vendor/bundle/ruby/3.2.0") in gems["gem_path"]  # GEM_PATH, once loaded

    run(main())


@pytest.mark.parametrize("options", GEM_MODES)
def test_gems_from_gem_path_and_nested_require_errors(code, tmp_path_factory, options):
    gem_home = tmp_path_factory.mktemp("gems")
    (gem_home / "gems/fancy-1.0.0/lib").mkdir(parents=True)
    (gem_home / "gems/fancy-1.0.0/lib/fancy.rb").write_text("module Fancy\n  def self.hi = 'fancy hi'\nend\n")
    (gem_home / "specifications").mkdir()
    (gem_home / "specifications/fancy-1.0.0.gemspec").write_text(textwrap.dedent("""
        Gem::Specification.new do |s|
          s.name = 'fancy'
          s.version = '1.0.0'
          s.summary = 'test gem'
          s.authors = ['squall']
          s.files = ['lib/fancy.rb']
          s.require_paths = ['lib']
        end
    """))
    code_dir = code({
        "app.rb": """
            require 'fancy'
            def handler(event:, context:)
              [Fancy.hi, Gem.loaded_specs['fancy'].version.to_s]
            end
        """,
        "pinned.rb": """
            gem 'fancy', '= 1.0.0'
            require 'fancy'
            def handler(event:, context:) = Fancy.hi
        """,
        "nested.rb": """
            require 'helper_that_fails'
        """,
        "helper_that_fails.rb": """
            raise 'helper broke'
        """,
    })
    env = {"GEM_PATH": str(gem_home)}

    async def main():
        async with session(code_dir, "app.handler", options, env=env) as rt:
            assert await rt.init() is None, rt.output
            assert json.loads((await rt.invoke({})).body) == ["fancy hi", "1.0.0"]
        async with session(code_dir, "pinned.handler", options, env=env) as rt:
            assert await rt.init() is None, rt.output
            assert json.loads((await rt.invoke({})).body) == "fancy hi"
        async with session(code_dir, "nested.handler", options, env=env) as rt:
            outcome = await rt.init()
            doc = json.loads(outcome.body)
            assert doc["errorType"] == "Init<RuntimeError>" and doc["errorMessage"] == "helper broke"
            user_frames = [frame for frame in doc["stackTrace"] if not frame.startswith("<internal:")]
            assert re.fullmatch(r".*/helper_that_fails\.rb:2:in `<top \(required\)>'", user_frames[0]), doc
            assert re.fullmatch(r".*/nested\.rb:2:in `<top \(required\)>'", user_frames[1]), doc

    run(main())


def test_large_payload_round_trip(code):
    code_dir = code({"echo.rb": """
        def handler(event:, context:)
          { 'size' => event['data'].bytesize, 'data' => event['data'] }
        end
    """})
    data = "x" * (1024 * 1024 - 64) + "é"

    async def main():
        async with session(code_dir, "echo.handler") as rt:
            assert await rt.init() is None
            for _ in range(2):
                outcome = await rt.invoke({"data": data})
                assert outcome.ok
                doc = json.loads(outcome.body)
                assert doc["size"] == len(data.encode())
                assert doc["data"] == data

    run(main())


def test_response_marshalling(code):
    code_dir = code({"function.rb": """
        require 'stringio'
        Point = Struct.new(:x, :y) do
          def to_json(*args) = { 'x' => x, 'y' => y }.to_json(*args)
        end

        def handler(event:, context:)
          case event['kind']
          when 'nil' then nil
          when 'string' then 'plain'
          when 'custom' then Point.new(1, 2)
          when 'io' then StringIO.new("raw \\x00 bytes".b)
          when 'nan' then { 'v' => Float::NAN }
          when 'binary' then "\\xff\\xfe"
          end
        end
    """})

    async def main():
        async with session(code_dir, "function.handler") as rt:
            assert await rt.init() is None
            assert (await rt.invoke({"kind": "nil"})).body == b"null"
            assert (await rt.invoke({"kind": "string"})).body == b'"plain"'
            assert json.loads((await rt.invoke({"kind": "custom"})).body) == {"x": 1, "y": 2}
            raw = await rt.invoke({"kind": "io"})
            assert raw.ok and raw.body == b"raw \x00 bytes" and raw.content_type == "application/unknown"
            for kind in ("nan", "binary"):
                outcome = await rt.invoke({"kind": kind})
                assert not outcome.ok
                assert outcome.error_type == "Function<JSON::GeneratorError>"
            # still serving
            assert (await rt.invoke({"kind": "string"})).ok

    run(main())


def test_undecodable_event_and_file_named_like_a_library(code):
    # logger.rb / json.rb in the code directory are the function's files, not the stdlib's
    code_dir = code({"logger.rb": """
        def handler(event:, context:)
          { 'event' => event }
        end
    """})

    async def main():
        async with session(code_dir, "logger.handler") as rt:
            assert await rt.init() is None, rt.output
            bad = await rt.invoke(raw=b"{not json")
            assert not bad.ok and bad.error_type == "Runtime.UnmarshalError"
            good = await rt.invoke(["a", 1])
            assert json.loads(good.body) == {"event": ["a", 1]}

    run(main())


def test_one_keep_alive_connection_for_every_request(code):
    code_dir = code({"function.rb": """
        def handler(event:, context:)
          raise ArgumentError, 'odd' if event['n'].odd?
          event['n']
        end
    """})
    connections = []

    async def main():
        async with session(code_dir, "function.handler") as rt:
            rt.api.admit = lambda sock: connections.append(sock.getpeername()) or True  # set before ruby connects
            assert await rt.init() is None
            for n in range(6):
                outcome = await rt.invoke({"n": n})
                assert outcome.ok == (n % 2 == 0), outcome
            assert len(connections) == 1, connections  # /next, responses and errors on one connection

    run(main())


class _HandRolledApi:
    """A Runtime API written by hand, to shape the HTTP exchange: it closes the first
    keep-alive connection right after answering the first response (without
    ``Connection: close``) and sends the second event with a chunked body."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[int, str, bytes]] = []
        self.done = asyncio.get_running_loop().create_future()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in header_lines if line)
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                method, path, _ = request_line.split(" ")
                self.requests.append((number, f"{method} {path}", body))
                if path.endswith("/invocation/next"):
                    count = sum(1 for _, r, _ in self.requests if r.endswith("/next"))
                    if count > 2:
                        self.done.set_result(None)
                        return  # park the third /next
                    payload = json.dumps({"n": count}).encode()
                    event_headers = (f"Lambda-Runtime-Aws-Request-Id: req-{count}\r\n"
                                     "Lambda-Runtime-Deadline-Ms: 9999999999999\r\n"
                                     "lambda-runtime-trace-id: Root=1-abc\r\nContent-Type: application/json\r\n")
                    if count == 1:
                        writer.write(f"HTTP/1.1 200 OK\r\n{event_headers}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                    else:
                        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:3], payload[3:]))
                        writer.write(f"HTTP/1.1 200 OK\r\n{event_headers}Transfer-Encoding: chunked\r\n\r\n".encode()
                                     + chunks + b"0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                    if number == 1:
                        await writer.drain()
                        writer.close()  # the server drops the idle keep-alive connection
                        return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def test_reconnects_once_when_the_server_closed_the_connection(code):
    code_dir = code({"function.rb": """
        def handler(event:, context:)
          { 'n' => event['n'], 'id' => context.aws_request_id, 'trace' => ENV['_X_AMZN_TRACE_ID'] }
        end
    """})

    async def main():
        api = _HandRolledApi()
        server = await asyncio.start_server(api.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
               "_HANDLER": "function.handler", "LAMBDA_TASK_ROOT": str(code_dir)}
        proc = await asyncio.create_subprocess_exec(*ruby_argv(), cwd=code_dir, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({api.done, exited}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            served = api.done.done() and proc.returncode is None  # still serving, waiting on its third /next
        finally:
            if proc.returncode is None:
                proc.kill()
            output = (await proc.communicate())[0].decode()
            server.close()
        assert served, output
        requests = [(number, line) for number, line, _ in api.requests]
        assert requests == [
            (1, "GET /2018-06-01/runtime/invocation/next"),
            (1, "POST /2018-06-01/runtime/invocation/req-1/response"),
            (2, "GET /2018-06-01/runtime/invocation/next"),  # sent again on a new connection
            (2, "POST /2018-06-01/runtime/invocation/req-2/response"),
            (2, "GET /2018-06-01/runtime/invocation/next"),
        ], output
        assert json.loads(api.requests[1][2]) == {"n": 1, "id": "req-1", "trace": "Root=1-abc"}
        assert json.loads(api.requests[3][2]) == {"n": 2, "id": "req-2", "trace": "Root=1-abc"}  # chunked event

    run(main())
