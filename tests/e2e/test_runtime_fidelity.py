"""Runtime fidelity through boto3 against a real server: a label served by an older interpreter is
accepted, and says so in RuntimeVersionConfig and /health."""

from __future__ import annotations

import json
from urllib.request import urlopen

from tests.conftest import create_function, require


def health(server) -> dict:
    with urlopen(f"{server.endpoint}/health", timeout=10) as response:
        return json.loads(response.read())


def test_an_older_interpreter_behind_a_label_is_said_at_create_and_get(server, lam):
    doc = health(server)
    warned = sorted(doc.get("runtimes_warnings") or {})
    served = [r for r in ("nodejs22.x", "nodejs20.x", "nodejs18.x") if r in doc["runtimes"]]
    require(bool(served), "no Node.js on this machine")
    for runtime in served:
        name = create_function(lam, {"index.js": "exports.handler = async () => process.version;\n"},
                               handler="index.handler", Runtime=runtime)
        config = lam.get_function_configuration(FunctionName=name)
        error = config["RuntimeVersionConfig"].get("Error")
        if runtime in warned:
            assert error == {"ErrorCode": "OlderInterpreter", "Message": doc["runtimes_warnings"][runtime]}
            answer = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
            assert isinstance(answer, str), answer
            major = answer.lstrip("v").split(".")[0]
            assert runtime.startswith(f"nodejs{major}") is False  # it does run, on the older Node.js
        else:
            assert error is None
