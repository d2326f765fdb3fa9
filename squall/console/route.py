"""The web console: static files under ``/console/`` and its two session endpoints.

The console is a page that calls the same APIs as the SDKs, signed (SigV4) in the browser with
the credentials of whoever signed in: the server adds no authority of its own. What it serves:

* ``GET /console`` → ``/console/``; ``GET /console/<file>``: the page, its script and its style
  (public, ``Cache-Control: no-cache``, a strict Content-Security-Policy: no inline script);
* ``GET /console/config.json`` (public): the region to sign for and whether authentication is on;
* ``POST /console/link`` (signed, ``squall console``): a one-time code for a sign-in link, for
  the identity that signed the request. Codes are random, single use, live five minutes and
  only in this process's memory;
* ``POST /console/session`` (public, ``{"code": ...}``): the code, once, for temporary
  credentials (``ASIA…``, a session token, 12 hours) of that same identity.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Callable

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse
from squall.auth.directory import Principal
from squall.auth.identity import CONSOLE_SESSION_LIFETIME_S, Identity

PREFIX = "/console"
CODE_LIFETIME_S = 300
MAX_CODES = 1000  # unexchanged codes kept at once (the oldest go first)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]


def _static_files() -> dict[str, bytes]:
    """name → bytes of every file in ``static/`` (read once: a fixed set, no paths from requests)."""
    files: dict[str, bytes] = {}
    for entry in resources.files("squall.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = entry.read_bytes()
    return files


@dataclass(frozen=True)
class _Code:
    principal: Principal
    expires: float


class OneTimeCodes:
    """Sign-in codes: random, single use, short-lived, in memory."""

    def __init__(self, clock: Callable[[], float] = time.time, lifetime_s: float = CODE_LIFETIME_S) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self._codes: dict[str, _Code] = {}

    def issue(self, principal: Principal) -> tuple[str, float]:
        now = self.clock()
        self._codes = {c: v for c, v in self._codes.items() if v.expires > now}
        while len(self._codes) >= MAX_CODES:
            self._codes.pop(next(iter(self._codes)))
        code = secrets.token_urlsafe(32)
        expires = now + self.lifetime_s
        self._codes[code] = _Code(principal, expires)
        return code, expires

    def redeem(self, code: str) -> Principal | None:
        """The principal the code was issued for, once; None if unknown, used or expired."""
        found = self._codes.pop(code, None)
        if found is None or self.clock() >= found.expires:
            return None
        return found.principal


class ConsoleRoute:
    service = "lambda"  # POST /console/link is signed as the Lambda API's own endpoints are

    def __init__(self, identity: Identity, region: str, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.region = region
        self.codes = OneTimeCodes(clock)
        self.files = _static_files()

    def claims(self, request: Request) -> bool:
        return request.path == PREFIX or request.path.startswith(PREFIX + "/")

    async def handle(self, request: Request) -> HttpResponse:
        path = request.path
        if request.method == "POST" and path == PREFIX + "/link":
            return await self._link(request)
        if request.method == "POST" and path == PREFIX + "/session":
            return await self._session(request)
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"Message": f"{request.method} is not allowed here."})
        if path == PREFIX:
            return HttpResponse(302, [("Location", PREFIX + "/"), ("Cache-Control", "no-cache")], b"")
        if path == PREFIX + "/config.json":
            return _json(200, {"region": self.region, "authentication": self.identity.enabled})
        name = path[len(PREFIX) + 1:] or "index.html"
        body = self.files.get(name)
        if body is None:
            return HttpResponse(404, [("Content-Type", "text/plain; charset=utf-8"), *SECURITY_HEADERS],
                                b"Not found. The console is at /console/.\n")
        content_type = CONTENT_TYPES["." + name.rsplit(".", 1)[-1]]
        return HttpResponse(200, [("Content-Type", content_type), ("Cache-Control", "no-cache"), *SECURITY_HEADERS],
                            body)

    async def _link(self, request: Request) -> HttpResponse:
        principal = request.state.get("principal")
        if not self.identity.enabled or not isinstance(principal, Principal):
            return _json(200, {"authentication": False, "path": PREFIX + "/"})
        code, expires = self.codes.issue(principal)
        return _json(200, {"authentication": True, "code": code, "path": f"{PREFIX}/#code={code}",
                           "expires": _iso(expires), "identity": principal.arn})

    async def _session(self, request: Request) -> HttpResponse:
        try:
            code = json.loads(request.body or b"{}").get("code")
        except (ValueError, AttributeError):
            code = None
        if not isinstance(code, str) or not code:
            return _json(400, {"__type": "InvalidParameterValueException", "Message": "Send {\"code\": \"...\"}."})
        principal = self.codes.redeem(code)
        session = None
        if principal is not None:
            session = await asyncio.to_thread(self.identity.session_like, principal, "console",
                                              CONSOLE_SESSION_LIFETIME_S)
        if session is None:
            return _json(403, {"__type": "AccessDeniedException",
                               "Message": "This sign-in link is invalid, expired or already used. Run `squall console` "
                                          "for a new one."})
        return _json(200, {"AccessKeyId": session.access_key_id, "SecretAccessKey": session.secret_access_key,
                           "SessionToken": session.session_token, "Expiration": _iso(session.expires),
                           "Identity": principal.arn if principal else "", "Region": self.region})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, document: object) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                        json.dumps(document).encode())
