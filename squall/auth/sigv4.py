"""Signature Version 4: reading a request's signature and checking it.

The canonical request and the string to sign are botocore's own (``SigV4Auth``, the code
every AWS SDK for Python signs with), fed with what the client said it signed: its
``SignedHeaders``, its timestamp and credential scope. Only the signing key is computed
here, and cached per secret, day, region and service (four HMACs saved on every request).
Both forms are read: the ``Authorization`` header and presigned query strings
(``X-Amz-Signature``, with ``X-Amz-Expires``), each with an optional session token.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote

from botocore.auth import EMPTY_SHA256_HASH, UNSIGNED_PAYLOAD, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from squall.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300  # 5 minutes, either way
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600
_AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.DOTALL)
_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")


@dataclass(frozen=True)
class Signed:
    """What a request claims about its signature."""

    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # X-Amz-Date: YYYYMMDDTHHMMSSZ
    token: str | None
    presigned: bool = False
    expires: int | None = None  # presigned: seconds from timestamp

    @property
    def epoch(self) -> int:
        t = self.timestamp  # YYYYMMDDTHHMMSSZ, checked by read() (time.strptime costs ~25 µs)
        return calendar.timegm((int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]), int(t[11:13]), int(t[13:15])))


def read(method: str, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> Signed:
    """The request's signature claims, or :class:`MissingAuthenticationToken` /
    :class:`IncompleteSignature` when there are none or they are malformed."""
    if "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        return _read_presigned(query)
    header = headers.get("authorization")
    if not header:
        raise MissingAuthenticationToken("Missing Authentication Token")
    match = _AUTH.match(header.strip())
    if match is None:
        algorithm = header.split(" ", 1)[0]
        raise IncompleteSignature(f"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                                  f"Unsupported algorithm: {algorithm}" if algorithm != ALGORITHM else
                                  "Authorization header is malformed.")
    parts: dict[str, str] = {}
    for piece in match.group(1).split(","):
        key, sep, value = piece.strip().partition("=")
        if sep:
            parts[key.strip()] = value.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in parts]
    if missing:
        raise IncompleteSignature(
            f"Authorization header requires '{missing[0]}' parameter. Authorization={header[:200]}"
        )
    timestamp = headers.get("x-amz-date") or ""
    if not _TIMESTAMP.match(timestamp):
        raise IncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    access_key, date, region, service = _scope(parts["Credential"])
    signed_headers = tuple(h for h in parts["SignedHeaders"].lower().split(";") if h)
    if "host" not in signed_headers:
        raise InvalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    return Signed(access_key, date, region, service, signed_headers, parts["Signature"], timestamp,
                  headers.get("x-amz-security-token"))


def _read_presigned(query: Mapping[str, list[str]]) -> Signed:
    def one(name: str) -> str:
        values = query.get(name)
        if not values or not values[0]:
            raise IncompleteSignature(f"AWS query-string parameters must include '{name}'. Re-examine the query-string "
                                      "parameters.")
        return values[0]

    if one("X-Amz-Algorithm") != ALGORITHM:
        raise IncompleteSignature(f"X-Amz-Algorithm only supports '{ALGORITHM}'.")
    access_key, date, region, service = _scope(one("X-Amz-Credential"))
    timestamp = one("X-Amz-Date")
    if not _TIMESTAMP.match(timestamp):
        raise IncompleteSignature("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".")
    try:
        expires = int(one("X-Amz-Expires"))
    except ValueError:
        raise IncompleteSignature("X-Amz-Expires should be a number.") from None
    if not 0 < expires <= MAX_PRESIGNED_EXPIRES_S:
        raise IncompleteSignature("X-Amz-Expires must be less than a week (in seconds) that is 604800.")
    signed_headers = tuple(h for h in one("X-Amz-SignedHeaders").lower().split(";") if h)
    token = query.get("X-Amz-Security-Token", [None])[0]
    return Signed(access_key, date, region, service, signed_headers, one("X-Amz-Signature"), timestamp, token,
                  presigned=True, expires=expires)


def _scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        raise IncompleteSignature(f"Credential should be scoped to a valid region. Credential={credential[:200]}"
                                  if len(parts) == 5 else
                                  f"Authorization header requires 'Credential' parameter. Credential={credential[:200]}")
    return parts[0], parts[1], parts[2], parts[3]


def check_time(signed: Signed, now: float | None = None) -> None:
    """Within five minutes of our clock (or, presigned, not expired)."""
    now = time.time() if now is None else now
    when = signed.epoch
    if signed.date != signed.timestamp[:8]:
        raise InvalidSignature(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                               f"HTTP: '{signed.date}' != '{signed.timestamp[:8]}', from '{signed.timestamp}'.")
    if signed.presigned:
        assert signed.expires is not None
        if now > when + signed.expires:
            raise InvalidSignature("Signature expired: the presigned URL is no longer valid.")
        if when > now + MAX_SKEW_S:
            raise InvalidSignature("Signature not yet current: the presigned URL is not valid yet.")
        return
    if abs(now - when) > MAX_SKEW_S:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        if when < now:
            bound = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - MAX_SKEW_S))
            raise InvalidSignature(f"Signature expired: {signed.timestamp} is now earlier than {bound} ({stamp} - 5 min.)")
        bound = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + MAX_SKEW_S))
        raise InvalidSignature(f"Signature not yet current: {signed.timestamp} is still later than {bound} ({stamp} + 5 min.)")


# ---- the signature itself ---------------------------------------------------------------------
class _Verifier(SigV4Auth):
    """botocore's signer, told what the client signed instead of choosing it."""

    def __init__(self, signed: Signed, secret: str, query: Mapping[str, list[str]], body: bytes,
                 content_sha: str | None) -> None:
        super().__init__(Credentials(signed.access_key, secret, signed.token), signed.service, signed.region)
        self.signed = signed
        self.content_sha = content_sha
        self.query = query
        self.body = body

    def headers_to_sign(self, request: AWSRequest):  # type: ignore[no-untyped-def]
        return request.headers  # only the signed ones were given

    def canonical_query_string(self, request: AWSRequest) -> str:
        if not self.query:
            return ""
        pairs = [(k, v) for k, values in self.query.items() if k != "X-Amz-Signature" for v in values]  # decoded
        return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))

    def payload(self, request: AWSRequest) -> str:
        if self.content_sha:  # the client sent the payload's hash (checked against the body already)
            return self.content_sha
        return hashlib.sha256(self.body).hexdigest() if self.body else EMPTY_SHA256_HASH

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        key = _signing_key(self.credentials.secret_key, self.signed.date, self.signed.region, self.signed.service)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=1024)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(signed: Signed, secret: str, method: str, url: str, headers: Mapping[str, str],
           query: Mapping[str, list[str]], body: bytes) -> bool:
    """Whether the request's signature is the one ``secret`` makes. ``url``: scheme, host and
    the raw (percent-encoded) path as received, without the query string."""
    content_sha = headers.get("x-amz-content-sha256") or (query.get("X-Amz-Content-Sha256") or [None])[0]
    if content_sha and content_sha != UNSIGNED_PAYLOAD:
        actual = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256_HASH
        if not hmac.compare_digest(actual, content_sha.lower()):
            return False  # the body is not the one whose hash was signed
    signed_headers = {name: headers[name] for name in signed.signed_headers if name in headers}
    request = AWSRequest(method=method, url=url, headers=signed_headers)
    request.context["timestamp"] = signed.timestamp
    verifier = _Verifier(signed, secret, query, body, content_sha)
    canonical = verifier.canonical_request(request)
    expected = verifier.signature(verifier.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, signed.signature.lower())
