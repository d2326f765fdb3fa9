"""Repository of identities: IAM users, their access keys, roles and inline policies, and
functions' resource-based policies. No secret is stored: an access key's secret is derived
from the server's key and the key's salt (``squall/auth/keys.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.store.db import function_policies, iam_access_keys, iam_role_policies, iam_roles, iam_user_policies, iam_users


@dataclass(frozen=True)
class UserRecord:
    name: str
    user_id: str
    path: str
    created: str


@dataclass(frozen=True)
class AccessKeyRecord:
    key_id: str
    user_name: str
    salt: str
    status: str  # Active | Inactive
    created: str


@dataclass(frozen=True)
class RoleRecord:
    name: str
    role_id: str
    path: str
    trust_policy: str
    description: str
    max_session_duration: int
    created: str


@dataclass(frozen=True)
class FunctionPolicyRecord:
    function_name: str
    qualifier: str  # "" for the unqualified function
    document: str
    revision_id: str


class Exists(Exception):
    pass


class IamRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- users and keys -------------------------------------------------------------------
    def users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            return [UserRecord(*r) for r in conn.execute(sa.select(iam_users).order_by(iam_users.c.name))]

    def user(self, name: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(iam_users).where(iam_users.c.name == name)).first()
        return UserRecord(*row) if row else None

    def create_user(self, user: UserRecord) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(iam_users.insert().values(**user.__dict__))
        except IntegrityError as exc:
            raise Exists(user.name) from exc

    def delete_user(self, name: str) -> str | None:
        """None when deleted; else what still hangs on the user ("keys", "policies", "missing")."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(iam_users.c.name).where(iam_users.c.name == name)).first() is None:
                return "missing"
            if conn.execute(sa.select(iam_access_keys.c.key_id).where(iam_access_keys.c.user_name == name)).first():
                return "keys"
            if conn.execute(sa.select(iam_user_policies.c.policy_name).where(iam_user_policies.c.user_name == name)).first():
                return "policies"
            conn.execute(iam_users.delete().where(iam_users.c.name == name))
        return None

    def keys(self, user_name: str | None = None) -> list[AccessKeyRecord]:
        stmt = sa.select(iam_access_keys).order_by(iam_access_keys.c.created, iam_access_keys.c.key_id)
        if user_name is not None:
            stmt = stmt.where(iam_access_keys.c.user_name == user_name)
        with self.engine.connect() as conn:
            return [AccessKeyRecord(*r) for r in conn.execute(stmt)]

    def key(self, key_id: str) -> AccessKeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(iam_access_keys).where(iam_access_keys.c.key_id == key_id)).first()
        return AccessKeyRecord(*row) if row else None

    def add_key(self, key: AccessKeyRecord, limit: int) -> bool:
        """False when the user has ``limit`` keys already."""
        with self.engine.begin() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(iam_access_keys).where(iam_access_keys.c.user_name == key.user_name)
            ).scalar_one()
            if count >= limit:
                return False
            conn.execute(iam_access_keys.insert().values(**key.__dict__))
        return True

    def delete_key(self, user_name: str, key_id: str) -> bool:
        with self.engine.begin() as conn:
            stmt = iam_access_keys.delete().where(iam_access_keys.c.key_id == key_id, iam_access_keys.c.user_name == user_name)
            return conn.execute(stmt).rowcount > 0

    # ---- roles --------------------------------------------------------------------------------
    def roles(self) -> list[RoleRecord]:
        with self.engine.connect() as conn:
            return [RoleRecord(*r) for r in conn.execute(sa.select(iam_roles).order_by(iam_roles.c.name))]

    def role(self, name: str) -> RoleRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(iam_roles).where(iam_roles.c.name == name)).first()
        return RoleRecord(*row) if row else None

    def create_role(self, role: RoleRecord) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(iam_roles.insert().values(**role.__dict__))
        except IntegrityError as exc:
            raise Exists(role.name) from exc

    def delete_role(self, name: str) -> str | None:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(iam_roles.c.name).where(iam_roles.c.name == name)).first() is None:
                return "missing"
            if conn.execute(sa.select(iam_role_policies.c.policy_name).where(iam_role_policies.c.role_name == name)).first():
                return "policies"
            conn.execute(iam_roles.delete().where(iam_roles.c.name == name))
        return None

    # ---- inline policies ----------------------------------------------------------------------
    def policies(self, kind: str, owner: str | None = None) -> list[tuple[str, str, str]]:
        """(owner, policy name, document) of users' (``kind`` "user") or roles' inline policies."""
        table, column = self._policy_table(kind)
        stmt = sa.select(column, table.c.policy_name, table.c.document).order_by(column, table.c.policy_name)
        if owner is not None:
            stmt = stmt.where(column == owner)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt)]  # type: ignore[misc]

    def put_policy(self, kind: str, owner: str, name: str, document: str) -> None:
        table, column = self._policy_table(kind)
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(column == owner, table.c.policy_name == name))
            conn.execute(table.insert().values({column.name: owner, "policy_name": name, "document": document}))

    def delete_policy(self, kind: str, owner: str, name: str) -> bool:
        table, column = self._policy_table(kind)
        with self.engine.begin() as conn:
            return conn.execute(table.delete().where(column == owner, table.c.policy_name == name)).rowcount > 0

    @staticmethod
    def _policy_table(kind: str) -> tuple[sa.Table, sa.Column]:
        if kind == "user":
            return iam_user_policies, iam_user_policies.c.user_name
        return iam_role_policies, iam_role_policies.c.role_name

    # ---- functions' resource-based policies ---------------------------------------------------
    def function_policies(self) -> list[FunctionPolicyRecord]:
        with self.engine.connect() as conn:
            return [FunctionPolicyRecord(*r) for r in conn.execute(sa.select(function_policies))]

    def function_policy(self, function_name: str, qualifier: str) -> FunctionPolicyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(function_policies).where(
                function_policies.c.function_name == function_name, function_policies.c.qualifier == qualifier)).first()
        return FunctionPolicyRecord(*row) if row else None

    def save_function_policy(self, record: FunctionPolicyRecord, expected_revision: str | None) -> bool:
        """Write (or, with an empty document, delete) a policy if its revision is still
        ``expected_revision`` (None: there was none)."""
        table = function_policies
        where = (table.c.function_name == record.function_name, table.c.qualifier == record.qualifier)
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(table.c.revision_id).where(*where)).scalar()
            if current != expected_revision:
                return False
            conn.execute(table.delete().where(*where))
            if record.document:
                conn.execute(table.insert().values(**record.__dict__))
        return True

    def delete_function_policies(self, function_name: str, qualifier: str | None = None) -> None:
        table = function_policies
        stmt = table.delete().where(table.c.function_name == function_name)
        if qualifier is not None:
            stmt = stmt.where(table.c.qualifier == qualifier)
        with self.engine.begin() as conn:
            conn.execute(stmt)
