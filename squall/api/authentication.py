"""The authentication middleware: every request is signed (SigV4) by a key Squall issued.

It reads the signature (header or presigned query), checks its time (five minutes of skew;
a presigned URL until it expires), its credential scope (the service the request is for and,
but for IAM and STS, the server's region), finds the access key or session token in the
:class:`~squall.auth.directory.Directory` and checks the signature with the key's secret.
The request then carries its principal (``request.state["principal"]``) for the
authorization each operation asks for. Only ``/health`` and the self-signed code download
links are served unsigned (and the web console's files and its code-for-credentials exchange,
``squall/console``), and ``/metrics`` to a scraper that sends the configured metrics token
as a bearer token. With authentication off, the principal is ``None`` (allowed everything).
"""

from __future__ import annotations

import hmac
from typing import Callable

from squall.api.middleware import Handler, Middleware, Request
from squall.auth import sigv4
from squall.auth.directory import Directory
from squall.errors import InvalidSignature

PUBLIC = (("GET", "/health"),
          ("GET", "/console"), ("POST", "/console/session"))  # the console's page; its one-time codes
PUBLIC_PREFIXES = (("GET", "/squall/code/"),  # carry their own signature (CodeLinks)
                   ("POST", "/squall/triggers/sns/"), ("POST", "/squall/triggers/s3/"),  # their own secret ids/tokens
                   ("GET", "/console/"))  # the console's static files and config.json (squall/console)
GLOBAL_SERVICES = ("iam", "sts")


def is_public(request: Request) -> bool:
    return (request.method, request.path) in PUBLIC or any(
        request.method == method and request.path.startswith(prefix) for method, prefix in PUBLIC_PREFIXES
    )


def _bearer_for_metrics(request: Request, token: str) -> bool:
    if not token or request.method != "GET" or request.path != "/metrics":
        return False
    header = request.headers.get("authorization", "")
    return header[:7].lower() == "bearer " and hmac.compare_digest(header[7:].strip().encode(), token.encode())


def authentication(directory: Directory | None, region: str, service_of: Callable[[Request], str],
                   clock: Callable[[], float], metrics_token: str = "") -> Middleware:
    """``directory`` None: authentication is off."""

    async def authenticate(request: Request, following: Handler) -> object:
        request.state["principal"] = None
        if directory is None or is_public(request) or _bearer_for_metrics(request, metrics_token):
            return await following(request)
        signed = sigv4.read(request.method, request.headers, request.query)
        sigv4.check_time(signed, clock())
        service = service_of(request)
        if signed.service != service:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{service}'. ")
        if signed.region != region and service not in GLOBAL_SERVICES:
            raise InvalidSignature(f"Credential should be scoped to a valid region, not '{signed.region}'. ")
        url = request.base_url + request.path

        def verify(secret: str) -> bool:
            return sigv4.verify(signed, secret, request.method, url, request.headers, request.query, request.body)

        request.state["principal"] = directory.authenticate(signed, verify)
        return await following(request)

    return authenticate  # type: ignore[return-value]
