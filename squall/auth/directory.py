"""Who is who: the users, keys and roles of the account, held in memory, and authentication.

The :class:`Directory` is loaded from the database at start and kept current by the IAM
service (``iam.py``) as it writes. Authenticating a request reads it only: an access key's
user and policies are dictionary lookups, its secret an HMAC (``keys.py``); a session
token names its role. The result is a :class:`Principal`: what policies are evaluated for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from squall.auth.keys import Keys, Session
from squall.auth.policy import Caller, Policy, evaluate
from squall.auth.sigv4 import Signed
from squall.errors import ExpiredToken, InvalidSignature, UnrecognizedClient
from squall.store.iam import AccessKeyRecord, IamRepository, RoleRecord, UserRecord

LAMBDA_SERVICE = "lambda.amazonaws.com"


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

    def load(self) -> None:
        """Everything, from the database (blocking: call it off the event loop)."""
        users = {u.name: _User(u) for u in self.repo.users()}
        for owner, name, document in self.repo.policies("user"):
            if owner in users:
                users[owner].policies[name] = Policy.parse(document)
        roles = {r.name: _Role(r, Policy.parse(r.trust_policy, resource_policy=True)) for r in self.repo.roles()}
        for owner, name, document in self.repo.policies("role"):
            if owner in roles:
                roles[owner].policies[name] = Policy.parse(document)
        self.users, self.roles = users, roles
        self.access_keys = {k.key_id: k for k in self.repo.keys()}

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
