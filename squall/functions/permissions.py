"""Functions' resource-based policies: who else may act on a function, a version or an alias.

AddPermission adds one statement (Lambda's format, compact JSON, keys in Lambda's order),
RemovePermission takes one away, GetPolicy shows the whole document; PutResourcePolicy,
GetResourcePolicy and DeleteResourcePolicy set, show and drop a whole document at once.
Each qualifier has a policy of its own (the function, each version, each alias; never
``$LATEST`` by name), with a revision id of its own. Policies are held in memory for the
authorizer, which evaluates them with the caller's identity policies (``squall/auth``).

Several front ends may share the database: each change is published as ``StateChanged("permissions",
function)`` once committed, and the other front ends re-read that function's policies.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.auth.policy import Policy
from squall.engine.bus import EventBus, FunctionDeleted, StateChanged, VersionDeleted
from squall.errors import (
    InvalidParameterValue,
    MalformedPolicyDocument,
    PolicyLengthExceeded,
    PreconditionFailed,
    PublicPolicy,
    ResourceConflict,
    ResourceNotFound,
)
from squall.store.aliases import AliasRepository
from squall.store.functions import FunctionRepository
from squall.store.iam import FunctionPolicyRecord, IamRepository

KIND = "permissions"  # the StateChanged kind of this cache
POLICY_MAX = 20480
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetPolicy API to retrieve the latest Revision Id")
NO_RESOURCE = "The resource you requested does not exist."
_ACCOUNT = re.compile(r"\d{12}")
_SERVICE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.(amazonaws\.com|amazon\.com|aws\.internal)")
_IAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:(iam|sts)::\d{12}:[^\s]+")


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


class Permissions:
    def __init__(self, repo: IamRepository, functions: FunctionRepository, aliases: AliasRepository, arns: Arns,
                 bus: EventBus) -> None:
        self.repo = repo
        self.functions = functions
        self.aliases = aliases
        self.arns = arns
        self.bus = bus
        self._policies: dict[tuple[str, str], tuple[Policy, str]] = {}  # (function, qualifier or "") → policy, revision
        self._changes = 0  # counts changes to _policies: a reload that one overtook reads again
        bus.subscribe(FunctionDeleted, lambda e: self._forget(e.name))
        bus.subscribe(VersionDeleted, lambda e: self._forget(e.name, e.version))
        bus.mirror(KIND, lambda name: self.reload(name), "resource policy of")

    async def load(self) -> None:
        for record in await asyncio.to_thread(self.repo.function_policies):
            self._policies[(record.function_name, record.qualifier)] = (
                Policy.parse(record.document, resource_policy=True), record.revision_id)

    # ---- other front ends' changes (one database, several front ends) --------------------
    async def reload(self, name: str) -> None:
        """Re-read the policies of function ``name`` ("": of every function) from the database."""
        seen = -1
        while seen != self._changes:  # changed meanwhile (here): what was read may be older
            seen = self._changes
            records = await asyncio.to_thread(self.repo.function_policies)
        fresh = {(r.function_name, r.qualifier): (Policy.parse(r.document, resource_policy=True), r.revision_id)
                 for r in records if not name or r.function_name == name}
        for key in [k for k in self._policies if (not name or k[0] == name) and k not in fresh]:
            del self._policies[key]
        self._policies.update(fresh)
        self._changes += 1

    def policy_for(self, name: str, qualifier: str | None) -> Policy | None:
        """The policy of a function (``qualifier`` None), a version or an alias, for the authorizer."""
        held = self._policies.get((name, qualifier or ""))
        return held[0] if held is not None else None

    def _forget(self, name: str, qualifier: str | None = None) -> None:
        for key in [k for k in self._policies if k[0] == name and (qualifier is None or k[1] == qualifier)]:
            del self._policies[key]
        self._changes += 1

    async def drop_qualifier(self, name: str, qualifier: str) -> None:
        """An alias (or version) went: its policy goes with it."""
        self._forget(name, qualifier)
        await asyncio.to_thread(self.repo.delete_function_policies, name, qualifier)
        self.bus.publish(StateChanged(KIND, name))

    # ---- AddPermission / RemovePermission / GetPolicy -----------------------------------------
    async def add(self, ref: FunctionRef, params: dict[str, Any]) -> str:
        if ref.qualifier == LATEST:
            raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")
        target_revision = await self._target_revision(ref, missing="add")
        statement = self._statement(ref, params)
        key = (ref.name, ref.qualifier or "")
        current = self._policies.get(key)
        expected = params.get("RevisionId")
        if expected is not None and expected != (current[1] if current else target_revision):
            raise PreconditionFailed(REVISION_MISMATCH)
        statements = [s.to_json() for s in current[0].statements] if current else []
        if any(s.get("Sid") == statement["Sid"] for s in statements):
            raise ResourceConflict(
                f"The statement id ({statement['Sid']}) provided already exists. Please provide a new statement id, "
                "or remove the existing statement."
            )
        await self._save(ref, statements + [statement], current)
        return _compact(statement)

    async def remove(self, ref: FunctionRef, sid: str, revision_id: str | None) -> None:
        if not await asyncio.to_thread(self.functions.exists, ref.name):
            raise ResourceNotFound(f"No policy found for: {self.arns.function(ref.name, ref.qualifier)}")
        await self._target_revision(ref, missing="remove")
        key = (ref.name, ref.qualifier or "")
        current = self._policies.get(key)
        if current is None:
            raise ResourceNotFound("No policy is associated with the given resource.")
        if revision_id is not None and revision_id != current[1]:
            raise PreconditionFailed(REVISION_MISMATCH)
        statements = [s.to_json() for s in current[0].statements]
        kept = [s for s in statements if s.get("Sid") != sid]
        if len(kept) == len(statements):
            raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
        await self._save(ref, kept, current)

    async def get(self, ref: FunctionRef) -> tuple[str, str]:
        """(policy document, revision id)."""
        current = self._policies.get((ref.name, ref.qualifier or ""))
        if current is None or not await asyncio.to_thread(self.functions.exists, ref.name):
            raise ResourceNotFound(NO_RESOURCE)
        return self._document(current[0]), current[1]

    # ---- Put/Get/DeleteResourcePolicy ---------------------------------------------------------
    async def put_document(self, ref: FunctionRef, document: str, revision_id: str | None) -> tuple[str, str]:
        await self._target_revision(ref, missing="add")
        try:
            policy = Policy.parse(document, resource_policy=True)
        except MalformedPolicyDocument as error:  # IAM's error; the Lambda API says it its own way
            raise InvalidParameterValue(f"The policy is not valid: {error.message}") from None
        for statement in policy.statements:
            public = statement.principal == "*" or (
                not isinstance(statement.principal, str) and statement.principal is not None
                and "*" in statement.principal.get("AWS", ()))
            if statement.effect == "Allow" and public and not statement.conditions:
                raise PublicPolicy("The resource-based policy you tried to add to the Lambda resource would grant "
                                   "public access to it, which isn't allowed.")
        current = self._policies.get((ref.name, ref.qualifier or ""))
        if revision_id is not None and revision_id != (current[1] if current else None):
            raise PreconditionFailed(REVISION_MISMATCH)
        revision = await self._save(ref, [s.to_json() for s in policy.statements], current, policy_id=policy.id)
        return self._document(self._policies[(ref.name, ref.qualifier or "")][0]), revision

    async def delete_document(self, ref: FunctionRef, revision_id: str | None) -> None:
        current = self._policies.get((ref.name, ref.qualifier or ""))
        if current is None:
            raise ResourceNotFound(NO_RESOURCE)
        if revision_id is not None and revision_id != current[1]:
            raise PreconditionFailed(REVISION_MISMATCH)
        await self._save(ref, [], current)

    # ---- internals ----------------------------------------------------------------------------
    def _document(self, policy: Policy) -> str:
        return _compact({"Version": "2012-10-17", "Id": policy.id or "default",
                         "Statement": [s.to_json() for s in policy.statements]})

    async def _save(self, ref: FunctionRef, statements: list[dict[str, Any]], current: tuple[Policy, str] | None,
                    policy_id: str | None = None) -> str:
        key = (ref.name, ref.qualifier or "")
        document = _compact({"Version": "2012-10-17", "Id": policy_id or "default", "Statement": statements})
        if len(document) > POLICY_MAX:
            raise PolicyLengthExceeded(f"The final policy size ({len(document)}) is bigger than the limit ({POLICY_MAX}).")
        revision = str(uuid.uuid4())
        record = FunctionPolicyRecord(ref.name, key[1], document if statements else "", revision)
        if not await asyncio.to_thread(self.repo.save_function_policy, record, current[1] if current else None):
            raise PreconditionFailed(REVISION_MISMATCH)
        if statements:
            self._policies[key] = (Policy.parse(document, resource_policy=True), revision)
        else:
            self._policies.pop(key, None)
        self._changes += 1
        self.bus.publish(StateChanged(KIND, ref.name))
        return revision

    async def _target_revision(self, ref: FunctionRef, missing: str) -> str:
        """The revision id of what the policy is for, or Lambda's not-found errors."""
        qualifier = ref.qualifier
        if qualifier is None or qualifier == LATEST or is_version(qualifier):
            version = await asyncio.to_thread(self.functions.get, ref.name, qualifier or LATEST)
            if version is None:
                if missing == "remove" and qualifier is None:
                    raise ResourceNotFound(f"No policy found for: {self.arns.function(ref.name)}")
                raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, qualifier)}")
            return version.revision_id
        if not await asyncio.to_thread(self.functions.exists, ref.name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        alias = await asyncio.to_thread(self.aliases.get, ref.name, qualifier)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.arns.function(ref.name, qualifier)}")
        return alias.revision_id

    def _statement(self, ref: FunctionRef, p: dict[str, Any]) -> dict[str, Any]:
        principal = str(p["Principal"])
        shown: Any
        if principal == "*":
            shown = "*"
        elif _ACCOUNT.fullmatch(principal):
            shown = {"AWS": f"arn:aws:iam::{principal}:root"}
        elif _IAM_ARN.fullmatch(principal):
            shown = {"AWS": principal}
        elif _SERVICE.fullmatch(principal):
            shown = {"Service": principal}
        else:
            raise InvalidParameterValue("The provided principal was invalid. Please check the principal and try again.")
        statement: dict[str, Any] = {
            "Sid": p["StatementId"], "Effect": "Allow", "Principal": shown, "Action": p["Action"],
            "Resource": self.arns.function(ref.name, ref.qualifier),
        }
        equals: dict[str, str] = {}
        if p.get("SourceAccount"):
            equals["AWS:SourceAccount"] = p["SourceAccount"]
        if p.get("FunctionUrlAuthType"):
            equals["lambda:FunctionUrlAuthType"] = p["FunctionUrlAuthType"]
        if p.get("PrincipalOrgID"):
            equals["aws:PrincipalOrgID"] = p["PrincipalOrgID"]
        if p.get("EventSourceToken"):
            equals["lambda:EventSourceToken"] = p["EventSourceToken"]
        condition: dict[str, Any] = {}
        if equals:
            condition["StringEquals"] = equals
        if p.get("SourceArn"):
            condition["ArnLike"] = {"AWS:SourceArn": p["SourceArn"]}
        if condition:
            statement["Condition"] = condition
        return statement
