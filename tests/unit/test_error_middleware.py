"""The error middleware (squall/api/middleware.py): every 5xx it answers is explained in the
server log under the request id."""

from __future__ import annotations

import asyncio
import logging

import pytest

from squall.api.middleware import PathRoute, Request, Router, chain, error_middleware
from squall.api.protocol import HttpResponse, RestJsonProtocol, load_service_model
from squall.errors import InvalidSubnetID, LambdaError, ResourceNotFound, ServiceError

PROTOCOL = RestJsonProtocol(load_service_model())
REQUEST_ID = "3f1c2d9e-0000-4000-8000-000000000001"
PATH = "/2015-03-31/functions/my-fn/invocations"


def serve(raise_: BaseException) -> HttpResponse:
    """One request through the error middleware and a router whose only route raises ``raise_``."""

    async def failing(request: Request) -> HttpResponse:
        raise raise_

    handler = chain(
        [error_middleware(lambda request, error: PROTOCOL.serialize_error(error), lambda: 30.0)],
        Router([PathRoute("POST", PATH, failing)]),
    )
    request = Request("POST", PATH, {}, {}, b"{}", REQUEST_ID, "http://127.0.0.1:9000")
    return asyncio.run(handler(request))


def failed_start() -> ServiceError:
    """A ServiceException the engine raises when a runtime fails to start, with its cause."""
    try:
        try:
            raise RuntimeError("bootstrap exited with status 127\nbefore the runtime API was reached")
        except RuntimeError as cause:
            raise ServiceError(f"The runtime failed to start; see the server log for request {REQUEST_ID}.") from cause
    except ServiceError as exc:
        return exc


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "squall.api"]


def test_service_error_is_logged_with_request_id_code_message_and_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="squall.api")
    response = serve(failed_start())
    assert response.status == 500
    [record] = records(caplog)
    assert record.levelno >= logging.WARNING
    line = record.getMessage()
    assert "\n" not in line
    for part in (REQUEST_ID, "POST", PATH, "500", "ServiceException", "The runtime failed to start",
                 "RuntimeError: bootstrap exited with status 127 before the runtime API was reached"):
        assert part in line, f"{part!r} missing from {line!r}"


def test_status_comes_from_the_renderer_not_the_class(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="squall.api")
    response = serve(InvalidSubnetID("network net-9 is not one of this server's"))
    assert response.status == 502  # the model's status for InvalidSubnetIDException
    [record] = records(caplog)
    assert "502 InvalidSubnetIDException" in record.getMessage()
    assert "caused by" not in record.getMessage()


def test_client_errors_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="squall.api")
    response = serve(ResourceNotFound("Function not found: arn:aws:lambda:us-east-1:123456789012:function:my-fn"))
    assert response.status == 404
    assert records(caplog) == []


def test_unexpected_exception_is_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="squall.api")
    response = serve(KeyError("boom"))
    assert response.status == 500
    assert REQUEST_ID.encode() in response.body
    [record] = records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert REQUEST_ID in record.getMessage()


def test_a_lambda_error_is_still_the_modelled_response() -> None:
    response = serve(failed_start())
    assert isinstance(failed_start(), LambdaError)
    assert ("x-amzn-ErrorType", "ServiceException") in response.headers
