"""Who is who: the users, keys and roles of the account, held in memory, and authentication.

The :class:`Directory` is loaded from the database at start and kept current by the IAM
service (``iam.py``) as it writes; another front end's writes reach it as a remote
``StateChanged("iam")`` (or ``CachesReset``) on the event bus, on which it reads everything
again off the event loop and swaps its maps in one step. Authenticating a request reads it only: an access key's
user and policies are dictionary lookups, its secret an HMAC (``keys.py``); a session
token names its role. The result is a :class:`Principal`: what policies are evaluated for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from squall.auth.keys import Keys, Session
from squall.auth.policy import Caller, Policy, evaluate
from squall.auth.sigv4 import Signed
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.errors import ExpiredToken, InvalidSignature, UnrecognizedClient
from squall.store.iam import AccessKeyRecord, IamRepository, RoleRecord, UserRecord

LAMBDA_SERVICE = "lambda.amazonaws.com"
IAM_STATE = "iam"  # the StateChanged kind of users, keys, roles and their policies
RELOAD_ATTEMPTS = 50  # reads discarded because local writes ran meanwhile, before giving up

log = logging.getLogger("squall.auth")


@dataclass(frozen=True)
class Principal:
    caller: Caller
    policies: tuple[Policy, ...]
    name: str  # the user's or role's name
    user_id: str  # AIDA… of a user, AROA…:session of a role session
    access_key_id: str = ""

    @property
    def arn(self) -> str:
        return self.caller.arn

    @property
    def described(self) -> str:
        """How AccessDenied messages name it ("User: <arn>")."""
        return self.caller.arn


@dataclass
class _User:
    record: UserRecord
    policies: dict[str, Policy] = field(default_factory=dict)


@dataclass
class _Role:
    record: RoleRecord
    trust: Policy
    policies: dict[str, Policy] = field(default_factory=dict)


class Directory:
    def __init__(self, repo: IamRepository, keys: Keys, account_id: str, clock: Callable[[], float] = time.time,
                 upstream: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.repo = repo
        self.keys = keys
        self.account_id = account_id
        self.clock = clock
        # an upstream service's key a role stands for: key id → (role name, secret)
        self.upstream = {key_id: (role, secret) for role, (key_id, secret) in (upstream or {}).items()}
        self.users: dict[str, _User] = {}
        self.access_keys: dict[str, AccessKeyRecord] = {}
        self.roles: dict[str, _Role] = {}
        self.bus: EventBus | None = None
        # local writes (iam.py) in flight, and a counter bumped as each starts and ends: a reload
        # whose read overlapped one is read again (its maps could lack what that write made)
        self._writes = 0
        self._generation = 0
        self._stale = False  # another front end changed something since the last reload began
        self._reloading = False

    def load(self) -> None:
        """Everything, from the database (blocking: call it off the event loop)."""
        self._swap(*self._read())

    def _read(self) -> tuple[dict[str, _User], dict[str, _Role], dict[str, AccessKeyRecord]]:
        users = {u.name: _User(u) for u in self.repo.users()}
        for owner, name, document in self.repo.policies("user"):
            if owner in users:
                users[owner].policies[name] = Policy.parse(document)
        roles = {r.name: _Role(r, Policy.parse(r.trust_policy, resource_policy=True)) for r in self.repo.roles()}
        for owner, name, document in self.repo.policies("role"):
            if owner in roles:
                roles[owner].policies[name] = Policy.parse(document)
        return users, roles, {k.key_id: k for k in self.repo.keys()}

    def _swap(self, users: dict[str, _User], roles: dict[str, _Role], access_keys: dict[str, AccessKeyRecord]) -> None:
        self.users, self.roles, self.access_keys = users, roles, access_keys

    async def reload(self) -> bool:
        """Read everything again (off the event loop) and swap the maps in at once; a read that
        overlapped a local write is read again. False when writes kept overlapping (maps unchanged)."""
        for attempt in range(RELOAD_ATTEMPTS):
            generation = self._generation
            if self._writes == 0:
                read = await asyncio.to_thread(self._read)
                if self._writes == 0 and generation == self._generation:
                    self._swap(*read)
                    return True
            await asyncio.sleep(0.01 * (attempt + 1))
        log.warning("the IAM directory was not reloaded: local writes kept overlapping its reads")
        return False

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a local write and its update of the maps (``iam.py``): no reload swaps meanwhile."""
        self._writes += 1
        self._generation += 1
        try:
            yield
        finally:
            self._writes -= 1
            self._generation += 1

    # ---- other front ends' changes ----------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        """Reload on another front end's IAM change, or when caches are reset (remote events only:
        this front end's own writes keep the maps current)."""
        self.bus = bus
        bus.subscribe(StateChanged, self._state_changed)
        bus.subscribe(CachesReset, self._caches_reset)

    def _state_changed(self, event: StateChanged) -> None:
        if event.kind == IAM_STATE:
            self._remote_change()

    def _caches_reset(self, event: CachesReset) -> None:
        self._remote_change()

    def _remote_change(self) -> None:
        assert self.bus is not None
        if not self.bus.from_remote:
            return
        self._stale = True
        if self._reloading:  # the reload under way reads again when it is done
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (shutdown): bus.defer would run nothing
            return
        self._reloading = True

        async def refresh() -> None:
            try:
                while self._stale:
                    self._stale = False
                    await self.reload()
            finally:
                self._reloading = False

        self.bus.defer(refresh, "the IAM directory")

    # ---- ARNs -----------------------------------------------------------------------------
    def user_arn(self, record: UserRecord) -> str:
        return f"arn:aws:iam::{self.account_id}:user{record.path}{record.name}"

    def role_arn(self, record: RoleRecord) -> str:
        return f"arn:aws:iam::{self.account_id}:role{record.path}{record.name}"

    def role_name_of(self, arn: str) -> str | None:
        """The role an ARN names in this account (``arn:aws:iam::ACCT:role/[path/]NAME``), or None."""
        prefix = f"arn:aws:iam::{self.account_id}:role/"
        if not arn.startswith(prefix):
            return None
        name = arn.rsplit("/", 1)[-1]
        role = self.roles.get(name)
        return name if role is not None and self.role_arn(role.record) == arn else None

    # ---- authentication -------------------------------------------------------------------
    def authenticate(self, signed: Signed, verify: Callable[[str], bool]) -> Principal:
        """The principal a signed request is from (``verify(secret)`` checks the signature),
        or UnrecognizedClient / InvalidSignature / ExpiredToken."""
        if signed.token is not None:
            return self._session(signed, verify)
        if signed.access_key in self.upstream:
            role_name, secret = self.upstream[signed.access_key]
            role = self.roles.get(role_name)
            if role is None:
                raise UnrecognizedClient("The security token included in the request is invalid.")
            if not verify(secret):
                raise InvalidSignature(
                    "The request signature we calculated does not match the signature you provided. Check your AWS "
                    "Secret Access Key and signing method. Consult the service documentation for details."
                )
            return self.role_principal(role.record, signed.access_key, signed.access_key)
        key = self.access_keys.get(signed.access_key)
        if key is None or key.status != "Active":
            raise UnrecognizedClient("The security token included in the request is invalid.")
        user = self.users.get(key.user_name)
        if user is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if not verify(self.keys.secret(key.key_id, key.salt)):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
                "Access Key and signing method. Consult the service documentation for details."
            )
        return self.user_principal(user.record, key.key_id)

    def user_principal(self, record: UserRecord, key_id: str = "") -> Principal:
        user = self.users[record.name]
        caller = Caller(self.user_arn(record), self.account_id, "user")
        return Principal(caller, tuple(user.policies.values()), record.name, record.user_id, key_id)

    def _session(self, signed: Signed, verify: Callable[[str], bool]) -> Principal:
        assert signed.token is not None
        opened = self.keys.open_session(signed.access_key, signed.token)
        if opened is None:
            return self._user_session(signed, verify)
        role_name, session_name, expires, secret = opened
        role = self.roles.get(role_name)
        if role is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if self.clock() >= expires:
            raise ExpiredToken("The security token included in the request is expired")
        if not verify(secret):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
                "Access Key and signing method. Consult the service documentation for details."
            )
        return self.role_principal(role.record, session_name, signed.access_key)

    def _user_session(self, signed: Signed, verify: Callable[[str], bool]) -> Principal:
        """A user's temporary credentials (``Keys.user_session``): the user as they are now
        (their policies today; a deleted user's sessions end with them)."""
        assert signed.token is not None
        opened = self.keys.open_user_session(signed.access_key, signed.token)
        if opened is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        user_name, _session_name, expires, secret = opened
        user = self.users.get(user_name)
        if user is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        if self.clock() >= expires:
            raise ExpiredToken("The security token included in the request is expired")
        if not verify(secret):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
                "Access Key and signing method. Consult the service documentation for details."
            )
        return self.user_principal(user.record, signed.access_key)

    def role_principal(self, record: RoleRecord, session_name: str, key_id: str = "") -> Principal:
        role = self.roles[record.name]
        arn = f"arn:aws:sts::{self.account_id}:assumed-role/{record.name}/{session_name}"
        caller = Caller(arn, self.account_id, "assumed-role", role_arn=self.role_arn(record))
        return Principal(caller, tuple(role.policies.values()), record.name, f"{record.role_id}:{session_name}", key_id)

    # ---- execution roles ------------------------------------------------------------------
    def lambda_may_assume(self, role_arn: str) -> bool:
        """Whether the role exists and its trust policy lets Lambda assume it."""
        name = self.role_name_of(role_arn)
        if name is None:
            return False
        role = self.roles[name]
        service = Caller(LAMBDA_SERVICE, self.account_id, "service", service=LAMBDA_SERVICE)
        return evaluate(service, "sts:AssumeRole", role_arn, (), role.trust).allowed

    def session(self, role_arn: str, session_name: str, lifetime_s: float) -> Session | None:
        """Temporary credentials for a role (None: the role is gone)."""
        name = self.role_name_of(role_arn)
        if name is None:
            return None
        return self.keys.session(name, session_name, lifetime_s, now=self.clock())

    def user_session(self, user_name: str, session_name: str, lifetime_s: float) -> Session | None:
        """Temporary credentials for a user (None: the user is gone)."""
        if user_name not in self.users:
            return None
        return self.keys.user_session(user_name, session_name, lifetime_s, now=self.clock())
