"""What every group of Lambda operations shares: the engine facade, the ARN parser, the
request, and the signed links GetFunction hands out for code downloads."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Awaitable, Callable

from squall.api.middleware import Request
from squall.arn import FunctionRef
from squall.engine.engine import Engine

Params = dict[str, Any]
Operation = Callable[[Params, Request], Awaitable[dict[str, Any]]]

CODE_LINK_TTL = 600  # seconds, like the presigned S3 URL Lambda returns


class CodeLinks:
    """Signed, expiring download links for function code (GetFunction's Code.Location)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def url(self, base_url: str, sha256_hex: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + CODE_LINK_TTL)
        return f"{base_url}/squall/code/{sha256_hex}.zip?expires={expires}&signature={self._sign(sha256_hex, expires)}"

    def verify(self, sha256_hex: str, expires: str, signature: str, now: float | None = None) -> bool:
        try:
            deadline = int(expires)
        except ValueError:
            return False
        if deadline < (now or time.time()):
            return False
        return hmac.compare_digest(self._sign(sha256_hex, deadline), signature)

    def _sign(self, sha256_hex: str, expires: int) -> str:
        return hmac.new(self.secret, f"{sha256_hex}:{expires}".encode(), hashlib.sha256).hexdigest()


class Operations:
    """A group of operations; each public coroutine named after an operation of the model
    takes the parameters as boto3 sends them (parsed and shape-checked already)."""

    def __init__(self, engine: Engine, links: CodeLinks) -> None:
        self.engine = engine
        self.arns = engine.arns
        self.links = links

    @classmethod
    def operation_names(cls) -> list[str]:
        """The operations this group serves: its public methods named like an operation of the
        model (capitalised). A class-level answer, so it needs no engine (see ``catalog``)."""
        return [name for name in dir(cls) if name[:1].isupper() and callable(getattr(cls, name))]

    def operations(self) -> dict[str, Operation]:
        return {name: getattr(self, name) for name in self.operation_names()}

    def ref(self, p: Params) -> FunctionRef:
        """The function (and qualifier) a request names, by Lambda's rules."""
        return self.arns.parse(p["FunctionName"], p.get("Qualifier"))
