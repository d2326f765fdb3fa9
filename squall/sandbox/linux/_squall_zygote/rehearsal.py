"""Warm-up and rehearsal: a spare's runtime runs a stand-in request before a real one."""

import fcntl
import os
import py_compile
import sys
import types

from _squall_zygote.syscalls import RUNTIME_DIR, TASK_ROOT


def load_bootstrap(path):
    """Compile the runtime as it appears inside the jail (/var/runtime/bootstrap.py)."""
    with open(path, "rb") as f:
        source = f.read()
    jail_path = RUNTIME_DIR + "/" + os.path.basename(path)
    module = types.ModuleType("bootstrap")
    module.__file__ = jail_path
    module.__builtins__ = __builtins__
    exec(compile(source, jail_path, "exec"), module.__dict__)
    return module


WARM_UP_SOURCE = """
import json, os, sys


class Thing(object):
    def __init__(self, value):
        self.value = value


def handler(event, context):
    print("event %s" % (event,), file=sys.stderr)
    return {"statusCode": 200, "body": json.dumps([Thing(i).value for i in range(10)])}
"""


# A stand-in function that spare sandboxes rehearse a request with (``Spawner.warm_up``).
REHEARSAL_MODULE = "_squall_rehearsal"
REHEARSAL_SOURCE = """\
import json
import os


def handler(event, context):
    return {"echo": event, "request": context.aws_request_id, "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}
"""


def make_rehearsal_dir(directory):
    """``directory`` (beside the jail's) holding the stand-in module and its bytecode, the
    path a deployed function takes; returns an fd of it, placed above the fds that
    sandboxes rearrange."""
    os.makedirs(directory, 0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, REHEARSAL_MODULE + ".py")
    try:
        with open(path) as f:
            current = f.read()
    except OSError:
        current = None
    if current != REHEARSAL_SOURCE:  # zygotes of other interpreters may be here at once
        temp = "%s.%d.new" % (path, os.getpid())
        with open(temp, "w") as f:
            f.write(REHEARSAL_SOURCE)
        os.rename(temp, path)
    py_compile.compile(path, doraise=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)
    finally:
        os.close(fd)


def rehearsal_request():
    """A spawn request as the backend sends one (placeholder values of typical sizes)."""
    name = "rehearsal-function"
    stream = "2026/01/01/[$LATEST]" + "0" * 32
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + name,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_LOG_FORMAT": "Text",
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "_HANDLER": "lambda_function.handler",
        "_SQUALL_MEMORY_PROBE": "0",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
        "LD_LIBRARY_PATH": TASK_ROOT + ":" + TASK_ROOT + "/lib:/opt/lib",
    }
    return {"mode": "python", "argv": [sys.executable, "-s", RUNTIME_DIR + "/bootstrap.py"], "env": env,
            "code_dir": "/" + "x" * 80, "tmp_mb": 512}


def warm_up(directory):
    """Run the import machinery on the stand-in module, so that forks find it warm
    (Python 3.11 specialises bytecode as it runs: done here once, not in every sandbox)."""
    import importlib

    sys.path.insert(0, directory)
    try:
        for _ in range(3):
            importlib.import_module(REHEARSAL_MODULE)
            del sys.modules[REHEARSAL_MODULE]
    finally:
        sys.path.remove(directory)
        sys.path_importer_cache.pop(directory, None)
