"""Squall's Python runtime: the process that runs a function's handler.

This file is a standalone script.  The server starts it with whatever python3.x
interpreter serves the function's runtime::

    <python> -s /abs/path/bootstrap.py

with cwd = the function's code directory, one end of a unix stream socketpair
as the control channel (fd 3, or the fd named by ``_SQUALL_CHANNEL_FD``),
fd 1 and fd 2 = the function's log pipe and stdin = /dev/null.  It therefore imports nothing but the standard library and
must keep working on every python3 version a runtime may use (no 3.10+ syntax).

Control channel framing (both directions)::

    frame = struct.pack("!II", len(meta), len(body)) + meta + body

meta is a UTF-8 JSON object, body raw bytes.  Worker -> server: one
``{"t": "ready"}`` or ``{"t": "init_error"}`` frame after init, then one
``{"t": "result"}`` frame per ``{"t": "invoke"}`` frame received.  EOF on the
channel ends the process with status 0.

The behaviour visible to user code (handler resolution, the context object,
logging, error documents, log lines) reproduces the AWS Lambda Python runtime.

Everything happens in functions so that a pre-initialised "zygote" can import
this module, call :func:`setup_process` / :func:`load_handler` and fork, then
call :func:`serve` in the child.  Importing the module has no side effects.
"""

import importlib
import json
import logging
import os
import socket
import struct
import sys
import time
import traceback

CONTROL_FD = 3
MAX_RESPONSE_BYTES = 6291556

_HEADER = struct.Struct("!II")
_META_ENCODER = json.JSONEncoder(separators=(",", ":"))

# errorType values used by the Lambda Python runtime.
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"

RESPONSE_TOO_LARGE_MESSAGE = (
    "Response payload size exceeded maximum allowed payload size (%d bytes)."
    % MAX_RESPONSE_BYTES
)

UNHANDLED_EXCEPTION_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. "
    "The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. "
    "For functions using managed runtimes, runtime updates can be triggered by a function change, "
    "or can be applied automatically. "
    "To determine if the runtime has been updated, check the runtime version in the INIT_START log entry. "
    "If this error correlates with a change in the runtime version, you may be able to mitigate this error "
    "by temporarily rolling back to the previous runtime version. "
    "For more information, see https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)

TEXT_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

_NBSP = "\u00a0"

# Per-process state.  The request id is read by the logging filter.
_current_request_id = None
_current_tenant_id = None
_json_logs = False
_encoder = None


# --------------------------------------------------------------------------
# errors


class FaultError(Exception):
    """An error the runtime itself reports, with a Lambda ``Runtime.*`` type."""

    def __init__(self, error_type, message, trace=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


def make_error(message, error_type, stack_trace, request_id=None):
    """The error document, keys in the order the Lambda Python runtime uses."""
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _is_runtime_frame(filename):
    return "/bootstrap.py" in filename or filename == __file__


def error_from_exception(exc_type, exc, tb, request_id=None):
    """Error document for an exception raised by user code.

    Leading frames that belong to this runtime are dropped, as Lambda does;
    frames are rendered by ``traceback.format_list`` from plain tuples (so no
    ``^^^`` caret lines on 3.11+).
    """
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i, frame in enumerate(frames):
        if not _is_runtime_frame(frame[0]):
            frames = frames[i:]
            break
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the runtime down
        message = "<exception str() failed>"
    return make_error(message, exc_type.__name__, traceback.format_list(frames), request_id)


def _indent_with_nbsp(line):
    stripped = line.lstrip(" ")
    return _NBSP * (len(line) - len(stripped)) + stripped


def format_error_log(error):
    """The log record the runtime writes for an error document (one line)."""
    if _json_logs:
        record = {
            "timestamp": time.strftime(LOG_DATE_FORMAT, time.gmtime()),
            "level": "ERROR",
        }
        record.update(error)
        return _to_json(record) + "\n"
    error_type = error.get("errorType")
    message = error.get("errorMessage")
    head = "[ERROR]"
    if error_type:
        head += " " + error_type
    if message:
        if error_type:
            head += ":"
        head += " " + message
    lines = [head]
    stack = error.get("stackTrace")
    if stack is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack:
            if element == "":
                lines.append("")
                continue
            for line in element.splitlines():
                lines.append(_indent_with_nbsp(line))
    # \r keeps the whole record on one line of the log pipe.
    return "\r".join(lines) + "\n"


def log_error(error):
    _write_log(format_error_log(error))


# --------------------------------------------------------------------------
# JSON encoding of results


def _json_default(obj):
    import decimal

    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj.is_infinite():
            return float(obj)
        if obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def _ensure_ascii():
    """Lambda's python3.12+ runtimes emit UTF-8 as-is; older ones escape to ASCII."""
    env = os.environ.get("AWS_EXECUTION_ENV", "")
    prefix = "AWS_Lambda_python3."
    if env.startswith(prefix):
        try:
            return int(env[len(prefix):]) < 12
        except ValueError:
            pass
    return sys.version_info < (3, 12)


def _get_encoder():
    global _encoder
    if _encoder is None:
        _encoder = json.JSONEncoder(ensure_ascii=_ensure_ascii(), default=_json_default)
    return _encoder


def _to_json(obj):
    return _get_encoder().encode(obj)


def marshal_response(response):
    """Return (payload bytes, content type or None)."""
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return _get_encoder().encode(response).encode("utf-8"), None
    except Exception as e:
        raise FaultError(MARSHAL_ERROR, "Unable to marshal response: %s" % (e,))


def unmarshal_event(body):
    if not body:
        return {}
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultError(UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % (e,))


# --------------------------------------------------------------------------
# context object


class CognitoIdentity(object):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, cognito_identity_id=None, cognito_identity_pool_id=None):
        self.cognito_identity_id = cognito_identity_id
        self.cognito_identity_pool_id = cognito_identity_pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __repr__(self):
        return "Client([%s])" % ",".join(
            "%s=%s" % (name, getattr(self, name)) for name in self.__slots__
        )


class ClientContext(object):
    __slots__ = ("custom", "env", "client")

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (self.custom, self.env, self.client)


def _object_from_dict(cls, data):
    if data is None:
        return None
    if not isinstance(data, dict):
        data = {}
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, data.get(name))
    return obj


_W3C_FIELDS = ("traceparent", "tracestate", "baggage")


def _parse_json_field(value, what):
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except Exception as e:
            raise FaultError(
                CONTEXT_UNMARSHAL_ERROR, "Unable to parse %s JSON: %s" % (what, e)
            )
    return value


class LambdaContext(object):
    """The ``context`` argument passed to the handler."""

    def __init__(
        self,
        request_id,
        client_context,
        identity,
        deadline_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        (
            self.log_group_name,
            self.log_stream_name,
            self.function_name,
            self.memory_limit_in_mb,
            self.function_version,
        ) = _platform_values()
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        w3c = {}
        if isinstance(client_context, dict) and "w3c" in client_context:
            raw = client_context.pop("w3c")
            if isinstance(raw, dict):
                w3c = dict((k, raw[k]) for k in _W3C_FIELDS if isinstance(raw.get(k), str))
        self._w3c = w3c

        self.client_context = _object_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _object_from_dict(Client, self.client_context.client)

        self.identity = CognitoIdentity()
        if isinstance(identity, dict):
            self.identity.cognito_identity_id = identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")

        self._deadline_ms = int(deadline_ms or 0)

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def w3c(self):
        return dict(self._w3c)

    def log(self, msg):
        _write_log(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


_PLATFORM_VARIABLES = (
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
)
_platform = None


def _platform_values():
    """The environment's fixed identity, read from the environment once per process (after any fork)."""
    global _platform
    if _platform is None:
        _platform = tuple(os.environ.get(name) for name in _PLATFORM_VARIABLES)
    return _platform


def make_context(meta):
    client_context = meta.get("client_context")
    client_context = _parse_json_field(client_context, "Client Context") if client_context else None
    identity = meta.get("identity")
    identity = _parse_json_field(identity, "Cognito Identity") if identity else None
    return LambdaContext(
        meta.get("id") or "",
        client_context,
        identity,
        meta.get("deadline_ms"),
        meta.get("arn"),
        meta.get("tenant_id"),
    )


# --------------------------------------------------------------------------
# log output


class _AutoFlushStream(object):
    """Text stream proxy that flushes after every write.

    stdout/stderr are a pipe, which Python would block-buffer; Lambda's
    runtime makes them unbuffered so output survives a timeout kill.
    """

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        n = self._stream.write(text)
        self._stream.flush()
        return n

    def writelines(self, lines):
        self._stream.writelines(lines)
        self._stream.flush()

    def flush(self):
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _write_log(text):
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.write(text)
    except Exception:
        pass


def flush_output():
    out, err, raw_out, raw_err = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    _flush(out)
    if err is not out:
        _flush(err)
    # Output written around a replaced or wrapped sys.stdout / sys.stderr sits in the raw streams.
    _flush(raw_out)
    if raw_err is not raw_out:
        _flush(raw_err)


def _flush(stream):
    if stream is None:
        return
    try:
        stream.flush()
    except Exception:
        pass


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id or ""
        record.tenant_id = _current_tenant_id
        return True


class _LogHandler(logging.Handler):
    """Root-logger handler: every record goes to stdout (the log pipe)."""

    def emit(self, record):
        try:
            text = self.format(record)
            if not text.endswith("\n"):
                text += "\n"
            _write_log(text)
        except Exception:
            self.handleError(record)


_JSON_RESERVED = frozenset(
    (
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename",
        "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
        "created", "msecs", "relativeCreated", "thread", "threadName",
        "processName", "process", "taskName", "aws_request_id", "tenant_id",
    )
)


class _JsonLogFormatter(logging.Formatter):
    """Lambda's JSON application-log record."""

    def format(self, record):
        level = min(50, max(0, record.levelno)) // 10 * 10
        created = time.gmtime(record.created)
        out = {
            "timestamp": "%s.%03dZ"
            % (time.strftime(LOG_DATE_FORMAT, created), int(record.msecs)),
            "level": logging.getLevelName(level),
            "message": record.getMessage(),
            "logger": record.name,
        }
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None:
            out["stackTrace"] = traceback.format_tb(exc_info[2])
            out["errorType"] = exc_info[0].__name__
            out["errorMessage"] = str(exc_info[1])
        out["requestId"] = getattr(record, "aws_request_id", None)
        if exc_info and exc_info[0] is not None:
            out["location"] = "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
        tenant = getattr(record, "tenant_id", None)
        if tenant is not None:
            out["tenantId"] = tenant
        for key, value in record.__dict__.items():
            if key not in _JSON_RESERVED and key not in out:
                out[key] = value
        out = dict((k, v) for k, v in out.items() if v is not None)
        return json.dumps(out, ensure_ascii=False, default=str) + "\n"


def _level_names():
    mapping = getattr(logging, "getLevelNamesMapping", None)
    if mapping is not None:
        return mapping()
    return dict(getattr(logging, "_nameToLevel", {}))


def setup_logging():
    global _json_logs
    _json_logs = (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").strip().upper() == "JSON"
    logging.Formatter.converter = time.gmtime
    handler = _LogHandler()
    if _json_logs:
        handler.setFormatter(_JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_LOG_FORMAT, LOG_DATE_FORMAT))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").strip().upper()
    if level == "TRACE":
        level = "DEBUG"
    if level and level in _level_names():
        root.setLevel(level)


def setup_streams():
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, _AutoFlushStream):
            continue
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8":
            try:
                stream.reconfigure(encoding="utf-8")
            except Exception:
                pass
        setattr(sys, name, _AutoFlushStream(stream))


# What Lambda's Python runtimes provide beyond the standard library: the AWS SDK and what it
# imports (top-level names). Of the interpreter's own site-packages, a function sees these and
# nothing else: the rest there is the server's (Squall, its web server, its database driver…).
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


def _is_site_dir(path):
    return path.rstrip("/").endswith(("site-packages", "dist-packages"))


class RuntimeSdkFinder(object):
    """Finds the SDK's top-level modules in the interpreter's site directories (taken off
    ``sys.path``), after the function's own directories: a function that ships its own boto3
    in /var/task or a layer gets that one, as on Lambda."""

    def __init__(self, directories):
        self.directories = list(directories)

    def find_spec(self, fullname, path=None, target=None):
        if path is not None or fullname not in RUNTIME_SDK or not self.directories:
            return None
        import importlib.machinery
        return importlib.machinery.PathFinder.find_spec(fullname, self.directories)

    def invalidate_caches(self):
        pass


def hide_server_site():
    """Take the interpreter's site directories off ``sys.path`` now (a zygote does it once, before
    it forks; ``setup_sys_path`` then finds nothing left to do)."""
    sys.path[:] = _hide_server_site(sys.path)


def _hide_server_site(entries):
    """``entries`` without the interpreter's site directories and the import hooks installed
    from them (an editable install's finder, setuptools' shim); the SDK finder put last."""
    hidden = [p for p in entries if p and _is_site_dir(p)]
    if not hidden and any(type(f).__name__ == "RuntimeSdkFinder" for f in sys.meta_path):
        return [p for p in entries if not (p and p.startswith("__editable__"))]  # done before (in the zygote)
    finder = None
    for existing in sys.meta_path:
        if isinstance(existing, RuntimeSdkFinder) or type(existing).__name__ == "RuntimeSdkFinder":
            finder = existing
    if finder is None:
        finder = RuntimeSdkFinder(hidden)
    elif hidden:
        finder.directories = hidden
    roots = tuple(os.path.join(p, "") for p in finder.directories)
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None) or ""
        if roots and location.startswith(roots) and name.split(".")[0] not in RUNTIME_SDK:
            del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if f is not finder and not _from_server_site(f, roots)] + [finder]
    return [p for p in entries if not (p and (_is_site_dir(p) or p.startswith("__editable__")))]


def _from_server_site(finder, roots):
    module = sys.modules.get(type(finder).__module__)
    location = getattr(module, "__file__", None) or ""
    return type(finder).__module__.startswith("__editable__") or bool(roots and location.startswith(roots))


def setup_sys_path(task_root):
    """Task root first, then the layer directories, as Lambda orders them; then the standard
    library. The interpreter's site-packages are off the path: only the SDK is found there."""
    here = os.path.dirname(os.path.abspath(__file__))
    kept = _hide_server_site([p for p in sys.path if not (p and os.path.abspath(p) == here)])
    front = [task_root]
    layer_site = "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2]
    for path in (layer_site, "/opt/python"):
        if os.path.isdir(path):
            front.append(path)
    sdk = os.path.join(here, "sdk")  # the runtime's own modules (snapshot_restore_py), after the function's
    sys.path[:] = front + [p for p in kept if p not in front and p != sdk] + [sdk]


def setup_process():
    """Everything done once per process before the handler is imported."""
    setup_streams()
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    setup_sys_path(task_root)
    setup_logging()


# --------------------------------------------------------------------------
# handler resolution


def load_handler(spec):
    """Import ``path/module.function`` and return the function.

    Raises :class:`FaultError` with Lambda's error types; any other exception
    raised by user code at import time propagates as itself.
    """
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultError(MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (spec, e))

    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise FaultError(
                BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module %s as a handler module" % module_name,
            )
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise FaultError(
            IMPORT_MODULE_ERROR, "Unable to import module '%s': %s" % (module_name, e)
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultError(
            USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (module_name, e),
            trace,
        )

    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultError(
            HANDLER_NOT_FOUND,
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )


# --------------------------------------------------------------------------
# peak memory


class MemoryProbe(object):
    """Peak RSS of this process per invocation (VmHWM, reset through clear_refs).

    The files are opened once, after any fork, and re-read with pread: a few µs per
    invocation instead of two opens. Skipped when the sandbox measures memory itself
    (``_SQUALL_MEMORY_PROBE=0``, e.g. from a cgroup).
    """

    def __init__(self):
        self.status_fd = self.clear_fd = None
        if os.environ.pop("_SQUALL_MEMORY_PROBE", "1") == "0":
            self.enabled = False
            return
        self.enabled = True
        try:
            self.status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
            self.clear_fd = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            pass

    def reset(self):
        if self.clear_fd is not None:
            try:
                os.pwrite(self.clear_fd, b"5", 0)
            except OSError:
                pass

    def peak_kb(self):
        if not self.enabled:
            return 0
        if self.status_fd is not None:
            try:
                data = os.pread(self.status_fd, 4096, 0)
                start = data.index(b"VmHWM:") + 6
                return int(data[start:data.index(b"kB", start)])
            except (OSError, ValueError):
                pass
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak // 1024 if sys.platform == "darwin" else peak
        except Exception:
            return 0


_memory = None


def reset_peak_rss():
    if _memory is not None:
        _memory.reset()


def peak_rss_kb():
    global _memory
    if _memory is None:
        _memory = MemoryProbe()
    return _memory.peak_kb()


# --------------------------------------------------------------------------
# control channel


class Channel(object):
    """Blocking framed I/O on the control socket."""

    def __init__(self, fd=CONTROL_FD):
        # user code must not hand the control channel to its own subprocesses
        os.set_inheritable(fd, False)
        self.sock = socket.socket(fileno=fd)
        self._buf = bytearray()

    def recv(self):
        """Next (meta, body), or None on EOF.  Usually one recv(2) per frame."""
        buf = self._buf
        header_size = _HEADER.size
        try:
            while True:
                have = len(buf)
                if have >= header_size:
                    meta_len, body_len = _HEADER.unpack_from(buf)
                    end = header_size + meta_len + body_len
                    if have >= end:
                        break
                    need = end - have
                else:
                    need = header_size - have
                chunk = self.sock.recv(max(65536, need))
                if not chunk:
                    return None
                buf += chunk
        except ConnectionError:
            return None
        meta = json.loads(buf[header_size:header_size + meta_len].decode("utf-8")) if meta_len else {}
        body = bytes(buf[header_size + meta_len:end])
        del buf[:end]
        return meta, body

    def send(self, meta, body=b""):
        meta_bytes = _META_ENCODER.encode(meta).encode("utf-8")
        head = _HEADER.pack(len(meta_bytes), len(body)) + meta_bytes
        if len(body) <= 65536:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)


# --------------------------------------------------------------------------
# init and invoke


def initialise(channel, spec, before_ready=None):
    """Load the handler and report ready / init_error.  Returns the handler or None.

    ``before_ready``: run once the handler is loaded (a template's snapshot); what it raises
    is an init error too."""
    try:
        handler = load_handler(spec)
        if before_ready is not None:
            before_ready()
    except Exception as e:
        if isinstance(e, FaultError):
            error = make_error(e.message, e.error_type, e.trace)
        else:
            error = error_from_exception(*sys.exc_info())
        logging.warning(UNHANDLED_EXCEPTION_WARNING)
        log_error(error)
        flush_output()
        channel.send(
            {"t": "init_error", "error_type": error["errorType"], "max_rss_kb": peak_rss_kb()},
            _to_json(error).encode("utf-8"),
        )
        return None
    flush_output()
    channel.send({"t": "ready", "max_rss_kb": peak_rss_kb()})
    return handler


class RestoreFailed(Exception):
    """An after-restore hook failed: the restored environment reported it and ends."""


def restored(channel, after_restore):
    """A runtime forked from a template (SnapStart): run the after-restore hooks, then report
    ready, or the hook's error (Lambda's ``Runtime.AfterRestoreError``) and raise RestoreFailed."""
    reset_peak_rss()
    try:
        after_restore()
    except Exception:
        error = error_from_exception(*sys.exc_info())
        error["errorMessage"] = "After-restore hook failed: %s" % error.get("errorMessage", "")
        error["errorType"] = "Runtime.AfterRestoreError"
        log_error(error)
        flush_output()
        channel.send(
            {"t": "init_error", "error_type": error["errorType"], "max_rss_kb": peak_rss_kb()},
            _to_json(error).encode("utf-8"),
        )
        raise RestoreFailed()
    flush_output()
    channel.send({"t": "ready", "max_rss_kb": peak_rss_kb()})


def _set_trace_id(trace_id):
    """_X_AMZN_TRACE_ID as this invocation's; written only when it differs (putenv is not free)."""
    trace_id = trace_id or None
    if os.environ.get("_X_AMZN_TRACE_ID") == trace_id:
        return
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)


def invoke(handler, meta, body):
    """Run one invocation.  Returns (result meta, result body)."""
    global _current_request_id, _current_tenant_id
    request_id = meta.get("id") or ""
    _current_request_id = request_id
    _current_tenant_id = meta.get("tenant_id")
    _set_trace_id(meta.get("trace_id"))

    reset_peak_rss()
    error = None
    payload = b""
    content_type = None
    try:
        context = make_context(meta)
        event = unmarshal_event(body)
        response = handler(event, context)
        payload, content_type = marshal_response(response)
    except FaultError as e:
        error = make_error(e.message, e.error_type, e.trace, request_id)
    except Exception:
        error = error_from_exception(*sys.exc_info(), request_id=request_id)
    # Drop the references before measuring and answering.
    context = event = response = None

    result = {"t": "result", "id": meta.get("id"), "ok": error is None}
    if error is not None:
        log_error(error)
        result["error_type"] = error["errorType"]
        payload = _to_json(error).encode("utf-8")
    elif len(payload) > MAX_RESPONSE_BYTES:
        result["ok"] = False
        result["error_type"] = RESPONSE_TOO_LARGE
        payload = _to_json(
            {"errorMessage": RESPONSE_TOO_LARGE_MESSAGE, "errorType": RESPONSE_TOO_LARGE}
        ).encode("utf-8")
    elif content_type is not None:
        result["content_type"] = content_type
    result["max_rss_kb"] = peak_rss_kb()
    return result, payload


def serve(channel, handler):
    """Answer invoke frames until the server closes the channel."""
    while True:
        frame = channel.recv()
        if frame is None:
            return
        meta, body = frame
        if meta.get("t") != "invoke":
            continue  # unknown frame types are ignored
        result, payload = invoke(handler, meta, body)
        flush_output()
        try:
            channel.send(result, payload)
        except (BrokenPipeError, ConnectionError):
            return


def channel_fd_from_environ():
    """The control channel's fd: ``_SQUALL_CHANNEL_FD`` if the sandbox set it, else 3.

    The variable is removed so that user code does not see it.
    """
    value = os.environ.pop("_SQUALL_CHANNEL_FD", None)
    try:
        return int(value) if value else CONTROL_FD
    except ValueError:
        return CONTROL_FD


# --------------------------------------------------------------------------
# rehearsal (in a spare sandbox, before it has a function)

_PROCESS_STATE = ("_current_request_id", "_current_tenant_id", "_json_logs", "_encoder", "_platform", "_memory")


def rehearse(module_dir, module_name):
    """Run what :func:`main` runs once this process has a function, on a stand-in one.

    For a spare sandbox forked from a zygote: its memory is the zygote's, shared
    copy-on-write, and every page the runtime writes first costs a fault (several µs on a
    VM). Walking the same path now — set up the process, import ``module_dir/module_name``
    through the path finder, report ready, answer one invocation over a socketpair —
    copies those pages while nobody waits. The caller sets the environment it wants
    rehearsed; what this function changes (sys.path, sys.modules, the path finder's cache,
    the root logger, this module's per-process state) is put back. Returns whether the
    stand-in answered its invocation.
    """
    saved_state = dict((name, globals()[name]) for name in _PROCESS_STATE)
    saved_path = list(sys.path)
    saved_finders = dict(sys.path_importer_cache)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    ours, peer_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel, peer = Channel(ours.detach()), Channel(peer_sock.detach())
    try:
        deadline_ms = int(time.time() * 1000) + 3000
        peer.send(
            {"t": "invoke", "id": "00000000-0000-4000-8000-000000000000", "deadline_ms": deadline_ms,
             "arn": "arn:aws:lambda:us-east-1:000000000000:function:rehearsal"},
            b'{"rehearsal": true}',
        )
        peer.sock.shutdown(socket.SHUT_WR)
        setup_process()
        sys.path.insert(0, module_dir)
        handler = initialise(channel, module_name + ".handler")
        if handler is not None:
            serve(channel, handler)
        channel.sock.close()  # the peer reads to the end, whatever init did
        frames = []
        while True:
            frame = peer.recv()
            if frame is None:
                break
            frames.append(frame[0])
        return [meta.get("t") for meta in frames] == ["ready", "result"] and frames[1].get("ok") is True
    finally:
        channel.sock.close()
        peer.sock.close()
        sys.modules.pop(module_name, None)
        sys.path_importer_cache.clear()  # e.g. no finder cached for a /var/task not mounted yet
        sys.path_importer_cache.update(saved_finders)
        sys.path[:] = saved_path
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        globals().update(saved_state)


def prepare_main():
    """What a runtime process sets up before its init (also a template's)."""
    global _memory
    _memory = MemoryProbe()  # opened here, after any fork: /proc/self is this process
    setup_process()


def main(fd=None):
    if fd is None:
        fd = channel_fd_from_environ()
    prepare_main()
    channel = Channel(fd)
    try:
        handler = initialise(channel, os.environ.get("_HANDLER", ""))
    except (BrokenPipeError, ConnectionError):
        return 0
    if handler is None:
        return 1
    serve(channel, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
