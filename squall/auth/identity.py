"""The identity seam of the engine: who may call (the directory, IAM), what they may do
(access), and the credentials execution environments get for their function's role.

With authentication off (``--auth off``) the directory still exists (roles are still
stored and listed) but requests carry no principal, every check passes, and a function's
role is not required to exist.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Mapping

from squall.auth.access import Access
from squall.auth.directory import Directory, Principal
from squall.auth.iam import Iam
from squall.auth.keys import Keys, Session
from squall.engine.bus import EventBus
from squall.store.iam import IamRepository

# An environment's credentials for its role outlive it: the pool replaces environments after
# 11 hours (PoolLimits.max_age_seconds), as Lambda recycles its own.
SESSION_LIFETIME_S = 12 * 3600
# The console's sessions (a `squall console` link): a working day.
CONSOLE_SESSION_LIFETIME_S = 12 * 3600


class Identity:
    def __init__(self, repo: IamRepository, server_key: bytes, account_id: str, region: str, enabled: bool,
                 clock: Callable[[], float] = time.time, upstream: Mapping[str, tuple[str, str]] | None = None,
                 upstream_endpoint: str = "", bus: EventBus | None = None) -> None:
        self.enabled = enabled
        self.keys = Keys(server_key)
        self.directory = Directory(repo, self.keys, account_id, clock, upstream)
        self.upstream = dict(upstream or {})  # role name → (access key id, secret) of the upstream service
        self.upstream_endpoint = upstream_endpoint
        if bus is not None:  # another front end's IAM changes: the directory reads everything again
            self.directory.attach(bus)
        self.iam = Iam(self.directory, bus)  # publishes StateChanged("iam") for the other front ends
        self.access = Access(region, clock)
        self.admin_key: tuple[str, str] | None = None

    async def start(self, known_admin_key: str | None) -> tuple[str, str]:
        """Load the directory; the administrator's key (created on the first start)."""
        await asyncio.to_thread(self.directory.load)
        self.admin_key = await self.iam.ensure_admin(known_admin_key)
        return self.admin_key

    def role_usable(self, role_arn: str) -> bool:
        """Whether a function may name this role (it exists and trusts Lambda)."""
        return not self.enabled or self.directory.lambda_may_assume(role_arn)

    def environment_credentials(self, role_arn: str, function_name: str) -> dict[str, str]:
        """The variables that give an environment its role's credentials (none when the role
        is gone, or authentication is off)."""
        if not self.enabled:
            return {}
        name = self.directory.role_name_of(role_arn)
        if name is not None and name in self.upstream:  # the upstream's key, which Squall accepts as the role
            key_id, secret = self.upstream[name]
            env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
            if self.upstream_endpoint:
                env["AWS_ENDPOINT_URL"] = self.upstream_endpoint  # every other service: the upstream
            return env
        session = self.directory.session(role_arn, function_name, SESSION_LIFETIME_S)
        if session is None:
            return {}
        return {
            "AWS_ACCESS_KEY_ID": session.access_key_id,
            "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
            "AWS_SESSION_TOKEN": session.session_token,
        }

    def session_like(self, principal: Principal, session_name: str,
                     lifetime_s: float = CONSOLE_SESSION_LIFETIME_S) -> Session | None:
        """Temporary credentials of the same identity as ``principal`` (a user: a user session
        named ``session_name``; a role session: another session of that role, of the same name),
        or None when it is gone."""
        if principal.caller.kind == "user":
            return self.directory.user_session(principal.name, session_name, lifetime_s)
        if principal.caller.kind == "assumed-role":
            role = self.directory.roles.get(principal.name)
            if role is None:
                return None
            same_session = principal.user_id.partition(":")[2] or session_name  # AROA…:<session name>
            return self.directory.session(self.directory.role_arn(role.record), same_session, lifetime_s)
        return None
