"""Layers: publishing, reading, listing and deleting layer versions, their permissions, and
what a function's ``Layers`` resolve to.

A layer version is a zip stored like function code (content-addressed, ``code_store``), with a
number per layer name that is never reused. A function lists up to 5 layer versions, in order;
they are merged into one tree that its environments see read-only at /opt (``layer_trees``).
Deleting a layer version hides it from the API and from new functions; functions already using
it keep it (its row stays, marked deleted, until no function version refers to it).

Layer version permissions (Add/Get/RemoveLayerVersionPermission) are a resource-based policy
with ``lambda:GetLayerVersion`` statements. The authorizer reads it (``policy_for``) when a
caller asks for the layer version or creates a function that uses it. Several front ends may
share the database: a change to a policy (or a deleted version) is published as
``StateChanged("layer_policies", "<layer>:<version>")`` once committed, and the other front ends
re-read that version's policy.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.loaders import Loader

from squall.arn import Arns
from squall.auth.policy import Policy
from squall.code import CodeLimits, inspect_zip
from squall.engine.bus import EventBus, StateChanged
from squall.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from squall.function import LayerUse, lambda_timestamp
from squall.functions.code_store import CodeStore
from squall.functions.layer_trees import OptTrees, opt_key
from squall.functions.s3_code import S3Code
from squall.store.layers import LayerRepository, StoredLayerVersion

KIND = "layer_policies"  # the StateChanged kind of this cache
LAYERS_MAX = 5
PAGE_MAX = 50
_LAYER_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d{12}):layer:([a-zA-Z0-9-_]+)(?::(\d+))?")
NO_POLICY = "No policy is associated with the given resource."
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetLayerVersionPolicy API to retrieve the latest Revision Id")


def _runtimes_of_the_model() -> frozenset[str]:
    shapes = Loader().load_service_model("lambda", "service-2")["shapes"]
    return frozenset(shapes["Runtime"]["enum"])


class LayerService:
    def __init__(self, repo: LayerRepository, code: CodeStore, opt_trees: OptTrees, arns: Arns, bus: EventBus,
                 code_limits: CodeLimits = CodeLimits(), clock: Any = time.time, mountable: bool = True,
                 s3_code: S3Code | None = None) -> None:
        self.repo = repo
        self.mountable = mountable  # the sandbox backend can show layers at /opt
        self.s3_code = s3_code  # reads Content.S3Bucket/S3Key (None: refused)
        self.code = code
        self.opt_trees = opt_trees
        self.arns = arns
        self.code_limits = code_limits
        self.clock = clock
        self._runtimes = _runtimes_of_the_model()
        self._policies: dict[tuple[str, int], Policy] = {}
        self._changes = 0  # counts changes to _policies: a reload that one overtook reads again
        self._opt_paths: dict[tuple[str, ...], Path] = {}
        self.bus = bus
        bus.mirror(KIND, lambda name: self.reload(name), "layer version policy")

    # ---- names and ARNs ------------------------------------------------------------------
    def layer_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.arns.region}:{self.arns.account_id}:layer:{name}"

    def version_arn(self, name: str, version: int) -> str:
        return f"{self.layer_arn(name)}:{version}"

    def _name(self, value: str) -> str:
        """A LayerName parameter (a name or a layer ARN of this server) as a name."""
        if not value.startswith("arn:"):
            return value
        match = _LAYER_ARN.fullmatch(value)
        if match is None or match.group(4) is not None:
            raise InvalidParameterValue(f"Invalid layer name or ARN: {value}")
        self._local(value, match)
        return match.group(3)

    def _local(self, value: str, match: re.Match[str]) -> None:
        region, account = match.group(1), match.group(2)
        if (region, account) != (self.arns.region, self.arns.account_id):
            raise ResourceNotFound(f"Layer {value} is not on this server: it serves region {self.arns.region} of "
                                   f"account {self.arns.account_id}.")

    def _parse_version_arn(self, value: str) -> tuple[str, int]:
        match = _LAYER_ARN.fullmatch(value)
        if match is None or match.group(4) is None:
            raise InvalidParameterValue(f"Layer version ARN {value} is not valid: it must end with the version number.")
        self._local(value, match)
        return match.group(3), int(match.group(4))

    # ---- the API ---------------------------------------------------------------------------
    async def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._name(params["LayerName"])
        content = params.get("Content") or {}
        from_s3 = content.get("S3Bucket") or content.get("S3Key")
        if from_s3 and content.get("ZipFile"):
            raise InvalidParameterValue("Please provide only one source for the layer content: ZipFile or S3Bucket/S3Key.")
        if from_s3 and self.s3_code is None:
            raise InvalidParameterValue("This server reads no layer content from S3: upload the zip (Content.ZipFile).")
        if not from_s3 and not content.get("ZipFile"):
            raise InvalidParameterValue("Please provide a source for the layer content (ZipFile, or S3Bucket and S3Key).")
        runtimes = list(params.get("CompatibleRuntimes") or [])
        unknown = [r for r in runtimes if r not in self._runtimes]
        if unknown:
            raise InvalidParameterValue(f"Unknown runtime {unknown[0]} in CompatibleRuntimes.")
        if from_s3:
            assert self.s3_code is not None
            package = await self.s3_code.package(content.get("S3Bucket"), content.get("S3Key"),
                                                 content.get("S3ObjectVersion"))
        else:
            package = await asyncio.to_thread(inspect_zip, content["ZipFile"], self.code_limits)
        document: dict[str, Any] = {"Description": params.get("Description") or "", "CreatedDate": lambda_timestamp(),
                                    "CodeSha256": package.sha256}
        for key in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if params.get(key) is not None:
                document[key] = params[key]
        hold = self.code.hold(package.sha256_hex)
        try:
            await self.code.put(package)
            await self.code.tree(package.sha256_hex, package)  # extracted once, now: layers are read at /opt
            stored = await asyncio.to_thread(self.repo.publish, name, package.sha256_hex, package.size,
                                             package.unzipped_size, document, self.clock())
        except BaseException:
            hold.release()
            await self.code.collect([package.sha256_hex])
            raise
        hold.release()
        return self._version_api(stored)

    async def get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._version_api(await self._get(self._name(params["LayerName"]), int(params["VersionNumber"])))

    async def get_by_arn(self, params: dict[str, Any]) -> dict[str, Any]:
        name, number = self._parse_version_arn(params["Arn"])
        return self._version_api(await self._get(name, number))

    async def _get(self, name: str, number: int) -> StoredLayerVersion:
        stored = await asyncio.to_thread(self.repo.get, name, number)
        if stored is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return stored

    def _matches(self, stored: StoredLayerVersion, params: dict[str, Any]) -> bool:
        runtime, architecture = params.get("CompatibleRuntime"), params.get("CompatibleArchitecture")
        if runtime and runtime not in stored.document.get("CompatibleRuntimes", []):
            return False
        return not architecture or architecture in stored.document.get("CompatibleArchitectures", [])

    async def list_layers(self, params: dict[str, Any]) -> dict[str, Any]:
        latest: dict[str, StoredLayerVersion] = {}
        for stored in await asyncio.to_thread(self.repo.versions):
            if stored.name not in latest and self._matches(stored, params):
                latest[stored.name] = stored  # newest first per name
        items = [{"LayerName": name, "LayerArn": self.layer_arn(name),
                  "LatestMatchingVersion": self._listed(stored)} for name, stored in sorted(latest.items())]
        page, marker = _page(items, params, "LayerName")
        return {"Layers": page, **({"NextMarker": marker} if marker else {})}

    async def list_versions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._name(params["LayerName"])
        found = [s for s in await asyncio.to_thread(self.repo.versions, name) if self._matches(s, params)]
        items = [self._listed(s) for s in found]
        page, marker = _page(items, params, "Version")
        return {"LayerVersions": page, **({"NextMarker": marker} if marker else {})}

    async def delete(self, params: dict[str, Any]) -> None:
        """Hide the version (idempotent, as on Lambda); its code goes once no function uses it."""
        name, number = self._name(params["LayerName"]), int(params["VersionNumber"])
        if await asyncio.to_thread(self.repo.mark_deleted, name, number):
            self._set_policy((name, number), None)
            self.bus.publish(StateChanged(KIND, f"{name}:{number}"))
            await self.purge()

    async def purge(self) -> None:
        """Drop the deleted versions no function version uses any more, and their code."""
        hashes = await asyncio.to_thread(self.repo.purge_deleted, self.version_arn)
        if hashes:
            await self.code.collect(hashes)

    # ---- permissions --------------------------------------------------------------------------
    async def add_permission(self, params: dict[str, Any]) -> dict[str, Any]:
        name, number = self._name(params["LayerName"]), int(params["VersionNumber"])
        stored = await self._get(name, number)
        if params["Action"] != "lambda:GetLayerVersion":
            raise InvalidParameterValue("Only lambda:GetLayerVersion can be granted on a layer version.")
        principal = str(params["Principal"])
        if params.get("OrganizationId") and principal != "*":
            raise InvalidParameterValue("OrganizationId can only be given with the Principal *.")
        statements = list(stored.policy.get("statements", []))
        if any(s["Sid"] == params["StatementId"] for s in statements):
            raise ResourceConflict(f"The statement id ({params['StatementId']}) provided already exists. "
                                   "Please provide a new statement id, or remove the existing statement.")
        self._check_revision(stored, params.get("RevisionId"))
        statement: dict[str, Any] = {
            "Sid": params["StatementId"], "Effect": "Allow",
            "Principal": "*" if principal == "*" else {
                "AWS": principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"},
            "Action": "lambda:GetLayerVersion", "Resource": self.version_arn(name, number),
        }
        if params.get("OrganizationId"):
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": params["OrganizationId"]}}
        revision = await self._save_policy(stored, [*statements, statement])
        return {"Statement": json.dumps(statement, separators=(",", ":")), "RevisionId": revision}

    async def get_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = await self._get(self._name(params["LayerName"]), int(params["VersionNumber"]))
        statements = stored.policy.get("statements") or []
        if not statements:
            raise ResourceNotFound(NO_POLICY)
        return {"Policy": json.dumps(self._document(statements), separators=(",", ":")),
                "RevisionId": stored.policy["revision"]}

    async def remove_permission(self, params: dict[str, Any]) -> None:
        stored = await self._get(self._name(params["LayerName"]), int(params["VersionNumber"]))
        statements = list(stored.policy.get("statements", []))
        kept = [s for s in statements if s["Sid"] != params["StatementId"]]
        if len(kept) == len(statements):
            raise ResourceNotFound(f"Statement {params['StatementId']} is not found in resource policy.")
        self._check_revision(stored, params.get("RevisionId"))
        await self._save_policy(stored, kept)

    @staticmethod
    def _check_revision(stored: StoredLayerVersion, given: str | None) -> None:
        if given is not None and given != stored.policy.get("revision"):
            raise PreconditionFailed(REVISION_MISMATCH)

    @staticmethod
    def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Id": "default", "Statement": statements}

    async def _save_policy(self, stored: StoredLayerVersion, statements: list[dict[str, Any]]) -> str:
        revision = str(uuid.uuid4())
        policy = {"statements": statements, "revision": revision}
        if not await asyncio.to_thread(self.repo.set_policy, stored.name, stored.version, policy,
                                       stored.policy.get("revision")):
            raise PreconditionFailed(REVISION_MISMATCH)  # changed meanwhile
        self._set_policy((stored.name, stored.version), statements)
        self.bus.publish(StateChanged(KIND, f"{stored.name}:{stored.version}"))
        return revision

    def _set_policy(self, key: tuple[str, int], statements: list[dict[str, Any]] | None) -> None:
        if statements:
            self._policies[key] = Policy.parse(self._document(statements), resource_policy=True)
        else:
            self._policies.pop(key, None)
        self._changes += 1

    async def load(self) -> None:
        """The layer versions' policies, for the authorizer (at start)."""
        for stored in await asyncio.to_thread(self.repo.versions):
            if stored.policy.get("statements"):
                self._policies[(stored.name, stored.version)] = Policy.parse(
                    self._document(stored.policy["statements"]), resource_policy=True)

    def policy_for(self, arn: str) -> Policy | None:
        match = _LAYER_ARN.fullmatch(arn)
        if match is None or match.group(4) is None:
            return None
        return self._policies.get((match.group(3), int(match.group(4))))

    # ---- other front ends' changes (one database, several front ends) --------------------
    async def reload(self, what: str) -> None:
        """Re-read the policy of ``what`` ("<layer>:<version>"; "<layer>": its every version; "":
        every layer's) from the database."""
        name, _, number = what.partition(":")
        seen = -1
        while seen != self._changes:  # changed meanwhile (here): what was read may be older
            seen = self._changes
            if number:
                stored = await asyncio.to_thread(self.repo.get, name, int(number))
                found = [] if stored is None else [stored]
            else:
                found = await asyncio.to_thread(self.repo.versions, name or None)
        statements = {(s.name, s.version): s.policy.get("statements") for s in found}
        for key in [k for k in self._policies if (not name or k[0] == name) and (not number or k[1] == int(number))]:
            statements.setdefault(key, None)  # gone (or deleted) since
        for key, listed in statements.items():
            self._set_policy(key, listed)

    # ---- functions' layers ---------------------------------------------------------------------
    async def resolve(self, arns: Sequence[str]) -> tuple[LayerUse, ...]:
        """A function's ``Layers`` as it records them: each must exist (and not be deleted)."""
        if not self.mountable:
            raise InvalidParameterValue(
                "This server's sandbox cannot mount layers at /opt (the process sandbox): run Squall as root on Linux "
                "(the linux sandbox) to use layers, or package the layer's files in the function's zip.")
        if len(arns) > LAYERS_MAX:
            raise InvalidParameterValue(f"Cannot reference more than {LAYERS_MAX} layers.")
        uses: list[LayerUse] = []
        names: set[str] = set()
        for arn in arns:
            name, number = self._parse_version_arn(arn)
            if name in names:
                raise InvalidParameterValue(f"Two different versions of the same layer are not allowed: {name}")
            names.add(name)
            stored = await asyncio.to_thread(self.repo.get, name, number)
            if stored is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            uses.append(LayerUse(self.version_arn(name, number), stored.code_size, stored.code_sha256_hex,
                                 stored.unzipped_size))
        return tuple(uses)

    def check_size(self, code_unzipped: int, layers: Sequence[LayerUse]) -> None:
        """Lambda's limit on code and layers together, unzipped."""
        total = code_unzipped + sum(use.unzipped_size for use in layers)
        if layers and total > self.code_limits.max_unzipped:
            raise InvalidParameterValue(
                f"Function code combined with layers exceeds the maximum allowed size of "
                f"{self.code_limits.max_unzipped} bytes. The actual size is {total} bytes.")

    async def opt_tree(self, layers: Sequence[LayerUse]) -> Path:
        """The merged /opt tree of these layers, built if missing (the layers' code must exist)."""
        hashes = tuple(use.sha256_hex for use in layers)
        trees = [await self.code.tree(sha) for sha in hashes]
        path = await asyncio.to_thread(self.opt_trees.ensure, hashes, trees)
        self._opt_paths[hashes] = path
        return path

    def opt_path(self, layers: Sequence[LayerUse]) -> Path | None:
        """Where the merged tree of these layers is (None: no layers). Cheap: the invoke path."""
        if not layers:
            return None
        hashes = tuple(use.sha256_hex for use in layers)
        path = self._opt_paths.get(hashes)
        if path is None:
            path = self._opt_paths[hashes] = self.opt_trees.path(hashes)
        return path

    def sweep(self, used: Sequence[Sequence[LayerUse]]) -> int:
        """At start: remove the merged trees no function version uses (blocking)."""
        keys = {opt_key([use.sha256_hex for use in layers]) for layers in used if layers}
        return self.opt_trees.sweep(keys)

    # ---- shapes ---------------------------------------------------------------------------
    def _listed(self, stored: StoredLayerVersion) -> dict[str, Any]:
        doc = stored.document
        item: dict[str, Any] = {"LayerVersionArn": self.version_arn(stored.name, stored.version),
                                "Version": stored.version, "Description": doc.get("Description", ""),
                                "CreatedDate": doc["CreatedDate"]}
        for key in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if key in doc:
                item[key] = doc[key]
        return item

    def _version_api(self, stored: StoredLayerVersion) -> dict[str, Any]:
        return {"Content": {"CodeSha256": stored.document["CodeSha256"], "CodeSize": stored.code_size,
                            "_sha256_hex": stored.code_sha256_hex},
                "LayerArn": self.layer_arn(stored.name), **self._listed(stored)}


def _page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> tuple[list[dict[str, Any]], str | None]:
    marker = params.get("Marker")
    start = 0
    if marker:
        if not str(marker).isdigit():
            raise InvalidParameterValue("The marker is not valid.")
        start = int(marker)
    size = min(int(params.get("MaxItems") or PAGE_MAX), PAGE_MAX)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)
