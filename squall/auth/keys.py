"""Access keys and session credentials, from one server key.

A long-term key's secret is an HMAC of its id and a random salt under the server's key: the
IAM tables hold the id and the salt only. The server's key is in the database
(``server_secrets``), so that every front end of one database derives the same secrets, and
copied to ``<data dir>/secret`` (mode 0600). Temporary credentials for execution roles are
self-contained: the session token carries the role, the session name and the expiry, sealed
with an HMAC; their secret is derived from the token. Verifying either needs no lookup of a
secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_id(prefix: str) -> str:
    """An IAM-style id: AKIA/ASIA (keys), AIDA (users), AROA (roles) + 16 characters."""
    return prefix + "".join(secrets.choice(_B32) for _ in range(16))


@dataclass(frozen=True)
class Session:
    """Temporary credentials of a role, as a function's environment gets them."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    role_name: str
    session_name: str
    expires: float  # epoch seconds
    user_name: str = ""  # a user's session (the console's sign-in link): role_name is then ""


class Keys:
    def __init__(self, server_key: bytes) -> None:
        self._secrets = hmac.new(server_key, b"squall access key secrets", hashlib.sha256).digest()
        self._sessions = hmac.new(server_key, b"squall session tokens", hashlib.sha256).digest()
        self._ids = hmac.new(server_key, b"squall derived ids", hashlib.sha256).digest()
        self._derived: dict[tuple[str, str], str] = {}  # (key id, salt) → secret, computed once

    def secret(self, key_id: str, salt: str) -> str:
        """A long-term key's secret (40 characters, as AWS's)."""
        found = self._derived.get((key_id, salt))
        if found is None:
            digest = hmac.new(self._secrets, f"{key_id}:{salt}".encode(), hashlib.sha256).digest()
            found = self._derived[(key_id, salt)] = base64.b64encode(digest).decode()[:40]
        return found

    def derived_id(self, prefix: str, label: str) -> str:
        """An IAM-style id every front end (same server key) derives alike from ``label``: what
        front ends racing to create the same thing insert, so that one insert wins."""
        digest = hmac.new(self._ids, label.encode(), hashlib.sha256).digest()
        return prefix + "".join(_B32[b % 32] for b in digest[:16])

    @staticmethod
    def new_salt() -> str:
        return secrets.token_hex(16)

    # ---- sessions -----------------------------------------------------------------------------
    def session(self, role_name: str, session_name: str, lifetime_s: float, now: float | None = None) -> Session:
        key_id = new_id("ASIA")
        expires = (time.time() if now is None else now) + lifetime_s
        claims = json.dumps({"k": key_id, "r": role_name, "s": session_name, "e": int(expires)}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
        token = f"{payload}.{self._seal(payload)}"
        return Session(key_id, self._session_secret(token), token, role_name, session_name, float(int(expires)))

    def open_session(self, key_id: str, token: str) -> tuple[str, str, float, str] | None:
        """(role name, session name, expiry, secret) of a session token we issued for
        ``key_id``, or None (forged, altered, or for another key). Expiry is not checked here."""
        payload, dot, seal = token.partition(".")
        if not dot or not hmac.compare_digest(self._seal(payload), seal):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if claims["k"] != key_id:
                return None
            return str(claims["r"]), str(claims["s"]), float(claims["e"]), self._session_secret(token)
        except (ValueError, KeyError, TypeError):
            return None

    # ---- user sessions (the console's one-time sign-in links) -----------------------------------
    def user_session(self, user_name: str, session_name: str, lifetime_s: float, now: float | None = None) -> Session:
        """Temporary credentials of a user: sealed as a role session is, but with a ``u`` claim
        (the user) instead of ``r``, so that neither kind opens as the other."""
        key_id = new_id("ASIA")
        expires = (time.time() if now is None else now) + lifetime_s
        claims = json.dumps({"k": key_id, "u": user_name, "s": session_name, "e": int(expires)}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
        token = f"{payload}.{self._seal(payload)}"
        return Session(key_id, self._session_secret(token), token, "", session_name, float(int(expires)), user_name)

    def open_user_session(self, key_id: str, token: str) -> tuple[str, str, float, str] | None:
        """(user name, session name, expiry, secret) of a user session token we issued for
        ``key_id``, or None (forged, altered, a role's, or for another key). Expiry is not checked here."""
        payload, dot, seal = token.partition(".")
        if not dot or not hmac.compare_digest(self._seal(payload), seal):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if claims["k"] != key_id or "r" in claims:
                return None
            return str(claims["u"]), str(claims["s"]), float(claims["e"]), self._session_secret(token)
        except (ValueError, KeyError, TypeError):
            return None

    def _seal(self, payload: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._sessions, payload.encode(), hashlib.sha256).digest()).decode().rstrip("=")

    def _session_secret(self, token: str) -> str:
        digest = hmac.new(self._secrets, f"session:{token}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()[:40]
