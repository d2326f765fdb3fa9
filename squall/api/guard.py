"""A server that web pages cannot drive.

A page the developer visits could otherwise create and invoke functions on the developer's
machine: a cross-site ``POST`` with ``Content-Type: text/plain`` needs no CORS preflight, and
with DNS rebinding the page can read the answers too. This middleware refuses, before
anything else runs:

* a ``Host`` that is not a loopback name (``localhost`` and its subdomains, ``127.0.0.1``,
  ``::1``), the configured listen address, or one of ``allowed_hosts`` (DNS rebinding);
* any ``Origin`` header that is not one of ``allowed_origins`` (SDKs and the CLI send none), or
  the request's own origin: the scheme and the ``Host`` (checked above) it was sent to — a page
  Squall served itself (the web console, ``squall/console``), whose calls are signed requests;
* a body whose ``Content-Type`` the protocol does not use — in particular the three a form or
  a "simple" cross-site request may send without a preflight. The one exception is the query
  protocol of IAM and STS (a form, to ``/`` only): such requests must be signed, and a
  browser's cross-site form carries an ``Origin``, refused above.

No CORS headers are sent (function URLs will send theirs where configured).
"""

from __future__ import annotations

from typing import Iterable

from squall.api.middleware import Handler, Middleware, Request
from squall.api.protocol import HttpResponse
from squall.errors import AccessDenied, UnsupportedMediaType

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"})
# what AWS's clients send: JSON (rest-json), nothing or bytes (Invoke payloads), JSON 1.1 (Logs)
CONTENT_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "binary/octet-stream", "application/x-amz-json-1.1",
     "application/x-amz-json-1.0"}
)


FORM = "application/x-www-form-urlencoded"  # IAM and STS (query protocol), at / only
# SNS posts its HTTP messages as text/plain; these webhooks carry their own secret (notifications.py)
WEBHOOKS = ("/squall/triggers/sns/", "/squall/triggers/s3/")


def host_name(header: str) -> str:
    """``Host`` without its port (``[::1]:9000`` → ``::1``), lower-case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def browser_guard(listen_host: str, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> Middleware:
    hosts = set(LOOPBACK) | {h.lower() for h in allowed_hosts}
    if listen_host not in ("0.0.0.0", "::", ""):
        hosts.add(listen_host.lower().strip("[]"))
    origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def guard(request: Request, following: Handler) -> HttpResponse:
        headers = request.headers
        host = headers.get("host")
        if host is not None:
            name = host_name(host)
            if name not in hosts and not name.endswith(".localhost"):
                raise AccessDenied(
                    f"Host '{host}' is not allowed. Squall answers to loopback names and its listen address; "
                    "add other names to the allowed_hosts setting (SQUALL_ALLOWED_HOSTS)."
                )
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in origins and (
                host is None or origin.rstrip("/").lower() != request.base_url.lower()):
            raise AccessDenied(
                f"Requests from web pages (Origin '{origin}') are refused. To allow a page, add its origin to the "
                "allowed_origins setting (SQUALL_ALLOWED_ORIGINS)."
            )
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in CONTENT_TYPES and not (content_type == FORM and request.path == "/") and not (
                content_type == "text/plain" and request.method == "POST" and request.path.startswith(WEBHOOKS)):
            raise UnsupportedMediaType(
                f"Content-Type '{content_type}' is not accepted: send application/json (or the payload as "
                "application/octet-stream)."
            )
        return await following(request)

    return guard
