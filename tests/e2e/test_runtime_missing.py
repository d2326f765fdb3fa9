"""A runtime whose interpreter is not installed: CreateFunction says what to install."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, make_zip, start_server


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    # No PATH: node, ruby, java and the other Pythons are not found; Squall itself runs.
    server = start_server(tmp_path_factory.mktemp("squall-bare"), "--isolation", "process", env={"PATH": "/nonexistent"})
    yield server
    server.stop()


@pytest.mark.parametrize(
    "runtime, needs",
    [("nodejs20.x", "apt install nodejs"), ("ruby3.3", "apt install ruby"), ("java21", "apt install default-jdk-headless")],
)
def test_missing_interpreter_is_a_clear_error(bare_server, runtime, needs):
    lam = bare_server.client()
    with pytest.raises(ClientError) as caught:
        lam.create_function(FunctionName="f", Runtime=runtime, Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": make_zip({"index.js": "x"})})
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidParameterValueException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = error["Error"]["Message"]
    assert f"The runtime parameter of {runtime} is not supported" in message and needs in message
    assert "provided.al2023" in message  # what is offered instead
