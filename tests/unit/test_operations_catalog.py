"""The generated table of Lambda operations (squall/api/operations/catalog.py) and what it claims:
every operation of the model is either served or answers 501, never a 404."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from squall.api.middleware import Request
from squall.api.operations import LambdaRoute
from squall.api.operations.base import CodeLinks
from squall.api.operations.catalog import DOC_PATH, model_operations, render_table, served_operations
from squall.api.protocol import parse_query
from squall.errors import NotImplementedOperation

LABEL = re.compile(r"\{([^}+]+)\+?\}")
# The engine is only read (its ``arns``) when the groups are built; an unserved operation
# answers 501 before anything touches it.
ROUTE = LambdaRoute(SimpleNamespace(arns=None), CodeLinks(b"test"))  # type: ignore[arg-type]
OPERATIONS = model_operations()
SERVED = served_operations()


def request_for(name: str) -> Request:
    """A request on the operation's route (labels filled in), as a client would send it."""
    http = ROUTE.protocol.model.operation_model(name).http
    path, _, literal = http["requestUri"].partition("?")
    raw = LABEL.sub(lambda m: quote(f"sample-{m.group(1)}", safe=""), path)
    return Request(http["method"], raw, parse_query(literal), {}, b"", "req-1", "http://127.0.0.1:9000")


def test_docs_table_is_up_to_date() -> None:
    written = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert written == render_table(), (
        f"{DOC_PATH} is out of date: run `python -m squall.api.operations.catalog --write`"
    )


def test_catalog_agrees_with_the_route() -> None:
    # What the catalog reads from the classes is what LambdaRoute builds from instances.
    assert SERVED == set(ROUTE.operations)
    assert SERVED <= set(OPERATIONS), f"served but not in the model: {sorted(SERVED - set(OPERATIONS))}"
    assert len(OPERATIONS) == len(ROUTE.protocol.model.operation_names)


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_operation_is_served_or_answers_501(name: str) -> None:
    request = request_for(name)
    matched, _ = ROUTE.protocol.match(request.method, request.path, request.query)
    assert matched.name == name  # it reaches LambdaRoute's dispatch, not a 404
    if name in SERVED:
        assert callable(ROUTE.operations[name])
        return
    with pytest.raises(NotImplementedOperation, match=rf"\b{name}\b"):
        asyncio.run(ROUTE.handle(request))
