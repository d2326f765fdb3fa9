"""The IAM subset Squall serves: users, access keys, roles and their inline policies.

Each operation takes the parameters as boto3's ``iam`` client sends them (parsed and
shape-checked by the query protocol) and returns the output shape of botocore's IAM model.
Writes go to the database first, then to the :class:`Directory` authentication reads.
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

from squall.auth.directory import Directory, Principal
from squall.auth.keys import new_id
from squall.auth.policy import Policy
from squall.auth.directory import _Role, _User
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
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.repo = directory.repo

    async def _io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

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
        try:
            await self._io(self.repo.create_user, record)
        except Exists:
            raise EntityAlreadyExists(f"User with name {record.name} already exists.") from None
        self.directory.users[record.name] = _User(record)

    async def GetUser(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return {"User": self._user(self._user_record(self._caller_user(caller, p.get("UserName"))))}

    async def ListUsers(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        prefix = p.get("PathPrefix") or "/"
        users = [self._user(u.record) for _, u in sorted(self.directory.users.items()) if u.record.path.startswith(prefix)]
        return {"Users": users, "IsTruncated": False}

    async def DeleteUser(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        name = p["UserName"]
        self._user_record(name)
        blocked = await self._io(self.repo.delete_user, name)
        if blocked == "missing":
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        if blocked == "keys":
            raise DeleteConflict("Cannot delete entity, must delete access keys first.")
        if blocked == "policies":
            raise DeleteConflict("Cannot delete entity, must delete policies first.")
        self.directory.users.pop(name, None)
        return {}

    # ---- access keys ------------------------------------------------------------------------
    async def CreateAccessKey(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        record, secret = await self.create_access_key(self._caller_user(caller, p.get("UserName")))
        return {"AccessKey": {"UserName": record.user_name, "AccessKeyId": record.key_id, "Status": record.status,
                              "SecretAccessKey": secret, "CreateDate": _timestamp(record.created)}}

    async def create_access_key(self, user_name: str) -> tuple[AccessKeyRecord, str]:
        self._user_record(user_name)
        keys = self.directory.keys
        record = AccessKeyRecord(new_id("AKIA"), user_name, keys.new_salt(), "Active", now_iso(self.directory.clock))
        if not await self._io(self.repo.add_key, record, KEYS_PER_USER):
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_USER}")
        self.directory.access_keys[record.key_id] = record
        return record, keys.secret(record.key_id, record.salt)

    async def DeleteAccessKey(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        user = self._caller_user(caller, p.get("UserName"))
        self._user_record(user)
        key_id = p["AccessKeyId"]
        if not await self._io(self.repo.delete_key, user, key_id):
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found")
        self.directory.access_keys.pop(key_id, None)
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
        await self._io(self.repo.put_policy, kind, owner, name, document)
        holder.policies[name] = policy

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
        if not await self._io(self.repo.delete_policy, kind, owner, name):
            raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")
        holder.policies.pop(name, None)

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
        try:
            await self._io(self.repo.create_role, record)
        except Exists:
            raise EntityAlreadyExists(f"Role with name {name} already exists.") from None
        self.directory.roles[name] = _Role(record, trust_policy)
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
        blocked = await self._io(self.repo.delete_role, name)
        if blocked == "missing":
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        if blocked == "policies":
            raise DeleteConflict("Cannot delete entity, must delete policies first.")
        self.directory.roles.pop(name, None)
        return {}

    # ---- STS --------------------------------------------------------------------------------
    async def GetCallerIdentity(self, p: dict[str, Any], caller: Principal) -> dict[str, Any]:
        return {"UserId": caller.user_id, "Account": self.directory.account_id, "Arn": caller.arn}

    # ---- bootstrap --------------------------------------------------------------------------
    async def ensure_admin(self, known_key_id: str | None) -> tuple[str, str]:
        """The administrator's access key (id, secret): ``known_key_id`` when it still
        exists, else a new one; the admin user (allowed everything) and the default
        execution role are created on the first start."""
        if ADMIN_USER not in self.directory.users:
            await self.create_user(UserRecord(ADMIN_USER, new_id("AIDA"), "/", now_iso(self.directory.clock)))
            await self.put_policy("user", ADMIN_USER, ADMIN_POLICY, ADMIN_DOCUMENT)
            if DEFAULT_ROLE not in self.directory.roles:
                await self.create_role(DEFAULT_ROLE, LAMBDA_TRUST, description="Squall's default execution role: "
                                       "Lambda may assume it; it grants nothing.")
        key = self.directory.access_keys.get(known_key_id or "")
        if key is not None and key.user_name == ADMIN_USER and key.status == "Active":
            return key.key_id, self.directory.keys.secret(key.key_id, key.salt)
        existing = [k for k in self.directory.access_keys.values() if k.user_name == ADMIN_USER and k.status == "Active"]
        if existing:  # the file was lost: the secret can be derived again
            key = min(existing, key=lambda k: k.created)
            return key.key_id, self.directory.keys.secret(key.key_id, key.salt)
        record, secret = await self.create_access_key(ADMIN_USER)
        return record.key_id, secret
