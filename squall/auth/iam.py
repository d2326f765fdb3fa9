"""The IAM subset Squall serves: users, access keys, roles and their inline policies.

Each operation takes the parameters as boto3's ``iam`` client sends them (parsed and
shape-checked by the query protocol) and returns the output shape of botocore's IAM model.
Writes go to the database first, then to the :class:`Directory` authentication reads, and
are told on the event bus (``StateChanged("iam")``) for the directories of other front ends.
IAM's own rules and messages: a user's two access keys, policy size limits (2,048
characters for a user's inline policies together, 10,240 for a role's, whitespace not
counted), no deleting what still has keys or policies, ``MalformedPolicyDocument``.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import urllib.parse
from typing import Any, Callable

from sqlalchemy.exc import IntegrityError

from squall.auth.directory import IAM_STATE, Directory, Principal
from squall.auth.keys import new_id
from squall.auth.policy import Policy
from squall.auth.directory import _Role, _User
from squall.engine.bus import EventBus, StateChanged
from squall.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    IamValidationError,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
)
from squall.store.iam import AccessKeyRecord, Exists, RoleRecord, UserRecord

KEYS_PER_USER = 2
USER_POLICY_CHARS = 2048
ROLE_POLICY_CHARS = 10240
TRUST_POLICY_CHARS = 2048
ADMIN_USER = "admin"
ADMIN_POLICY = "AdministratorAccess"
ADMIN_DOCUMENT = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
DEFAULT_ROLE = "squall-function"  # what `squall deploy` uses: trusted by Lambda, no permissions
LAMBDA_TRUST = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": '
                '"lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}')


def now_iso(clock: Callable[[], float]) -> str:
    return datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def _chars(document: str) -> int:
    return len(re.sub(r"\s", "", document))


class Iam:
    def __init__(self, directory: Directory, bus: EventBus | None = None) -> None:
        self.directory = directory
        self.repo = directory.repo
        self.bus = bus

    async def _io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    def _changed(self, name: str = "") -> None:
        """A write committed: the other front ends' directories read again."""
        if self.bus is not None:
            self.bus.publish(StateChanged(IAM_STATE, name))

    async def _reread_user(self, name: str) -> None:
        """The user as the database has it now (another front end wrote it), into the directory."""
        with self.directory.writing():
            await self._reread_user_now(name)

    async def _reread_user_now(self, name: str) -> None:
        record = await self._io(self.repo.user, name)
        policies = await self._io(self.repo.policies, "user", name)
        if record is None:
            self.directory.users.pop(name, None)
            return
        self.directory.users[name] = _User(record, {n: Policy.parse(d) for _, n, d in policies})

    async def _reread_role(self, name: str) -> None:
        with self.directory.writing():
            await self._reread_role_now(name)

    async def _reread_role_now(self, name: str) -> None:
        record = await self._io(self.repo.role, name)
        policies = await self._io(self.repo.policies, "role", name)
        if record is None:
            self.directory.roles.pop(name, None)
            return
        self.directory.roles[name] = _Role(record, Policy.parse(record.trust_policy, resource_policy=True),
                                           {n: Policy.parse(d) for _, n, d in policies})

    # ---- shapes ---------------------------------------------------------------------------
    def _user(self, record: UserRecord) -> dict[str, Any]:
        return {"Path": record.path, "UserName": record.name, "UserId": record.user_id,
                "Arn": self.directory.user_arn(record), "CreateDate": _timestamp(record.created)}

    def _role(self, record: RoleRecord) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "Path": record.path, "RoleName": record.name, "RoleId": record.role_id, "Arn": self.directory.role_arn(record),
            "CreateDate": _timestamp(record.created),
            "AssumeRolePolicyDocument": urllib.parse.quote(record.trust_policy, safe=""),  # IAM sends it URL-encoded
            "MaxSessionDuration": record.max_session_duration,
        }
        if record.description:
            shown["Description"] = record.description
        return shown

    def _user_record(self, name: str) -> UserRecord:
        user = self.directory.users.get(name)
        if user is None:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        return user.record

    def _role_record(self, name: str) -> RoleRecord:
        role = self.directory.roles.get(name)
        if role is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return role.record

    def _caller_user(self, caller: Principal, given: str | None) -> str:
        if given:
            return given
        if caller.caller.kind != "user":
            raise IamValidationError("Must specify userName when calling with non-User credentials")
        return caller.name

    # ---- users ----------------------------------------------------------------------------
    async def CreateUser(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        record = UserRecord(p["UserName"], new_id("AIDA"), p.get("Path") or "/", now_iso(self.directory.clock))
        await self.create_user(record)
        return {"User": self._user(record)}

    async def create_user(self, record: UserRecord) -> None:
        with self.directory.writing():
            try:
                await self._io(self.repo.create_user, record)
            except Exists:
                raise EntityAlreadyExists(f"User with name {record.name} already exists.") from None
            self.directory.users[record.name] = _User(record)
        self._changed(record.name)

    async def GetUser(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return {"User": self._user(self._user_record(self._caller_user(caller, p.get("UserName"))))}

    async def ListUsers(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        prefix = p.get("PathPrefix") or "/"
        users = [self._user(u.record) for _, u in sorted(self.directory.users.items()) if u.record.path.startswith(prefix)]
        return {"Users": users, "IsTruncated": False}

    async def DeleteUser(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        name = p["UserName"]
        self._user_record(name)
        with self.directory.writing():
            blocked = await self._io(self.repo.delete_user, name)
            if blocked == "missing":  # another front end deleted it
                self.directory.users.pop(name, None)
                raise NoSuchEntity(f"The user with name {name} cannot be found.")
            if blocked == "keys":
                raise DeleteConflict("Cannot delete entity, must delete access keys first.")
            if blocked == "policies":
                raise DeleteConflict("Cannot delete entity, must delete policies first.")
            self.directory.users.pop(name, None)
        self._changed(name)
        return {}

    # ---- access keys ------------------------------------------------------------------------
    async def CreateAccessKey(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        record, secret = await self.create_access_key(self._caller_user(caller, p.get("UserName")))
        return {"AccessKey": {"UserName": record.user_name, "AccessKeyId": record.key_id, "Status": record.status,
                              "SecretAccessKey": secret, "CreateDate": _timestamp(record.created)}}

    async def create_access_key(self, user_name: str, key_id: str | None = None) -> tuple[AccessKeyRecord, str]:
        """A new key (``key_id``: an id every front end derives alike; when another front end
        stored it first, that key is the result)."""
        self._user_record(user_name)
        keys = self.directory.keys
        record = AccessKeyRecord(key_id or new_id("AKIA"), user_name, keys.new_salt(), "Active",
                                 now_iso(self.directory.clock))
        with self.directory.writing():
            try:
                added = await self._io(self.repo.add_key, record, KEYS_PER_USER)
            except IntegrityError:  # the id is taken (a racing front end's), or the user is gone
                stored = await self._io(self.repo.key, record.key_id)
                if key_id is None or stored is None or stored.user_name != user_name:
                    if await self._io(self.repo.user, user_name) is None:
                        self.directory.users.pop(user_name, None)
                        raise NoSuchEntity(f"The user with name {user_name} cannot be found.") from None
                    raise
                self.directory.access_keys[stored.key_id] = stored
                return stored, keys.secret(stored.key_id, stored.salt)
            if not added:
                raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_USER}")
            self.directory.access_keys[record.key_id] = record
        self._changed(user_name)
        return record, keys.secret(record.key_id, record.salt)

    async def DeleteAccessKey(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        user = self._caller_user(caller, p.get("UserName"))
        self._user_record(user)
        key_id = p["AccessKeyId"]
        with self.directory.writing():
            if not await self._io(self.repo.delete_key, user, key_id):
                known = self.directory.access_keys.get(key_id)
                if known is not None and known.user_name == user:  # another front end deleted it
                    self.directory.access_keys.pop(key_id, None)
                raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found")
            self.directory.access_keys.pop(key_id, None)
        self._changed(user)
        return {}

    async def ListAccessKeys(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        user = self._caller_user(caller, p.get("UserName"))
        self._user_record(user)
        keys = sorted((k for k in self.directory.access_keys.values() if k.user_name == user), key=lambda k: k.created)
        return {"AccessKeyMetadata": [{"UserName": k.user_name, "AccessKeyId": k.key_id, "Status": k.status,
                                       "CreateDate": _timestamp(k.created)} for k in keys], "IsTruncated": False}

    # ---- inline policies --------------------------------------------------------------------
    async def PutUserPolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        await self.put_policy("user", p["UserName"], p["PolicyName"], p["PolicyDocument"])
        return {}

    async def PutRolePolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        await self.put_policy("role", p["RoleName"], p["PolicyName"], p["PolicyDocument"])
        return {}

    async def put_policy(self, kind: str, owner: str, name: str, document: str) -> None:
        holder = self.directory.users.get(owner) if kind == "user" else self.directory.roles.get(owner)
        if holder is None:
            raise NoSuchEntity(f"The {kind} with name {owner} cannot be found.")
        policy = Policy.parse(document)
        limit = USER_POLICY_CHARS if kind == "user" else ROLE_POLICY_CHARS
        total = _chars(document) + sum(_chars(p.source) for n, p in holder.policies.items() if n != name)
        if total > limit:
            raise LimitExceeded(f"Maximum policy size of {limit} bytes exceeded for {kind} {owner}")
        with self.directory.writing():
            for attempt in range(3):
                try:
                    await self._io(self.repo.put_policy, kind, owner, name, document)
                    break
                except IntegrityError:  # another front end put it meanwhile (again), or the owner is gone
                    exists = self.repo.user if kind == "user" else self.repo.role
                    if await self._io(exists, owner) is None:
                        (self.directory.users if kind == "user" else self.directory.roles).pop(owner, None)
                        raise NoSuchEntity(f"The {kind} with name {owner} cannot be found.") from None
                    if attempt == 2:
                        raise
            holder.policies[name] = policy
        self._changed(owner)

    async def GetUserPolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return self._get_policy("user", p["UserName"], p["PolicyName"])

    async def GetRolePolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return self._get_policy("role", p["RoleName"], p["PolicyName"])

    def _get_policy(self, kind: str, owner: str, name: str) -> dict[str, Any]:
        holder = self.directory.users.get(owner) if kind == "user" else self.directory.roles.get(owner)
        if holder is None:
            raise NoSuchEntity(f"The {kind} with name {owner} cannot be found.")
        policy = holder.policies.get(name)
        if policy is None:
            raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")
        key = "UserName" if kind == "user" else "RoleName"
        return {key: owner, "PolicyName": name, "PolicyDocument": urllib.parse.quote(policy.source, safe="")}

    async def DeleteUserPolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        await self._delete_policy("user", p["UserName"], p["PolicyName"])
        return {}

    async def DeleteRolePolicy(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        await self._delete_policy("role", p["RoleName"], p["PolicyName"])
        return {}

    async def _delete_policy(self, kind: str, owner: str, name: str) -> None:
        holder = self.directory.users.get(owner) if kind == "user" else self.directory.roles.get(owner)
        if holder is None:
            raise NoSuchEntity(f"The {kind} with name {owner} cannot be found.")
        with self.directory.writing():
            if not await self._io(self.repo.delete_policy, kind, owner, name):
                holder.policies.pop(name, None)  # another front end deleted it, if it was here
                raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")
            holder.policies.pop(name, None)
        self._changed(owner)

    async def ListUserPolicies(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        user = self.directory.users.get(p["UserName"])
        if user is None:
            raise NoSuchEntity(f"The user with name {p['UserName']} cannot be found.")
        return {"PolicyNames": sorted(user.policies), "IsTruncated": False}

    async def ListRolePolicies(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        role = self.directory.roles.get(p["RoleName"])
        if role is None:
            raise NoSuchEntity(f"The role with name {p['RoleName']} cannot be found.")
        return {"PolicyNames": sorted(role.policies), "IsTruncated": False}

    # ---- roles ------------------------------------------------------------------------------
    async def CreateRole(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        record = await self.create_role(p["RoleName"], p["AssumeRolePolicyDocument"], p.get("Path") or "/",
                                        p.get("Description") or "", p.get("MaxSessionDuration") or 3600)
        shown = self._role(record)
        del shown["MaxSessionDuration"]  # as AWS: only GetRole and ListRoles show it
        return {"Role": shown}

    async def create_role(self, name: str, trust: str, path: str = "/", description: str = "",
                          max_session_duration: int = 3600) -> RoleRecord:
        trust_policy = Policy.parse(trust, resource_policy=True)
        if _chars(trust) > TRUST_POLICY_CHARS:
            raise LimitExceeded(f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_CHARS}")
        for statement in trust_policy.statements:
            if statement.principal is None:
                raise MalformedPolicyDocument("AssumeRolepolicy contained an invalid principal element.")
        record = RoleRecord(name, new_id("AROA"), path, trust, description, max_session_duration,
                            now_iso(self.directory.clock))
        with self.directory.writing():
            try:
                await self._io(self.repo.create_role, record)
            except Exists:
                raise EntityAlreadyExists(f"Role with name {name} already exists.") from None
            self.directory.roles[name] = _Role(record, trust_policy)
        self._changed(name)
        return record

    async def GetRole(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return {"Role": self._role(self._role_record(p["RoleName"]))}

    async def ListRoles(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        prefix = p.get("PathPrefix") or "/"
        roles = [self._role(r.record) for _, r in sorted(self.directory.roles.items()) if r.record.path.startswith(prefix)]
        return {"Roles": roles, "IsTruncated": False}

    async def DeleteRole(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        name = p["RoleName"]
        self._role_record(name)
        with self.directory.writing():
            blocked = await self._io(self.repo.delete_role, name)
            if blocked == "missing":  # another front end deleted it
                self.directory.roles.pop(name, None)
                raise NoSuchEntity(f"The role with name {name} cannot be found.")
            if blocked == "policies":
                raise DeleteConflict("Cannot delete entity, must delete policies first.")
            self.directory.roles.pop(name, None)
        self._changed(name)
        return {}

    # ---- STS --------------------------------------------------------------------------------
    async def GetCallerIdentity(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return {"UserId": caller.user_id, "Account": self.directory.account_id, "Arn": caller.arn}

    # ---- bootstrap --------------------------------------------------------------------------
    async def ensure_admin(self, known_key_id: str | None) -> tuple[str, str]:
        """The administrator's access key (id, secret): ``known_key_id`` when it still
        exists, else a new one; the admin user (allowed everything) and the default
        execution role are created on the first start.

        Front ends of one database starting together race here: whichever creates the user,
        the role, the key first wins and the others take what it made (the first key's id is
        derived from the server's key, the admin's id and its keys so far, alike on each)."""
        if ADMIN_USER not in self.directory.users:
            try:
                await self.create_user(UserRecord(ADMIN_USER, new_id("AIDA"), "/", now_iso(self.directory.clock)))
            except EntityAlreadyExists:  # another front end's first start
                await self._reread_user(ADMIN_USER)
            if ADMIN_POLICY not in self.directory.users[ADMIN_USER].policies:
                await self.put_policy("user", ADMIN_USER, ADMIN_POLICY, ADMIN_DOCUMENT)
            if DEFAULT_ROLE not in self.directory.roles:
                try:
                    await self.create_role(DEFAULT_ROLE, LAMBDA_TRUST, description="Squall's default execution role: "
                                           "Lambda may assume it; it grants nothing.")
                except EntityAlreadyExists:
                    await self._reread_role(DEFAULT_ROLE)
        key = self.directory.access_keys.get(known_key_id or "")
        if key is not None and key.user_name == ADMIN_USER and key.status == "Active":
            return key.key_id, self.directory.keys.secret(key.key_id, key.salt)
        existing = [k for k in self.directory.access_keys.values() if k.user_name == ADMIN_USER and k.status == "Active"]
        if existing:  # the file was lost: the secret can be derived again
            key = min(existing, key=lambda k: k.created)
            return key.key_id, self.directory.keys.secret(key.key_id, key.salt)
        admin = self.directory.users[ADMIN_USER].record
        held = await self._io(self.repo.keys, ADMIN_USER)  # the database's: the directory may lag
        stored = [k for k in held if k.status == "Active"]
        if stored:  # another front end made it since this one loaded
            key = min(stored, key=lambda k: (k.created, k.key_id))
            self.directory.access_keys[key.key_id] = key
            return key.key_id, self.directory.keys.secret(key.key_id, key.salt)
        key_id = self.directory.keys.derived_id("AKIA", f"admin key:{admin.user_id}:{','.join(sorted(k.key_id for k in held))}")
        record, secret = await self.create_access_key(ADMIN_USER, key_id)
        return record.key_id, secret
