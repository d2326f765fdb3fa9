"""The control plane of functions: create, read, update, delete, list.

The store is the source of truth; an in-memory map of each function's invocable ``$LATEST``
serves the resolver without touching the database. State transitions are real:
CreateFunction answers ``Pending`` and the code is unpacked in the background before the
function becomes ``Active``; updates go ``InProgress`` → ``Successful`` (or ``Failed``)
while invokes keep using the previous configuration until the new one is ready. Every
transition gets a new RevisionId, as on AWS. ``Publish`` on create or on a code update also
adds a published version, Pending until the code is ready. Changes are told on the bus.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from pathlib import Path
from typing import Any, Callable

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.code import CodeLimits, CodePackage, inspect_zip
from squall.engine.bus import CachesReset, EventBus, FunctionDeleted, FunctionUpdated, ReservedConcurrencyChanged
from squall.errors import (
    InvalidParameterValue,
    LambdaError,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
)
from squall.function import Code, FunctionVersion, LayerUse, State, UpdateStatus, merged_logging, validate_settings
from squall.functions.code_store import CodeHold, CodeStore
from squall.functions.layers import LayerService
from squall.functions.s3_code import S3Code
from squall.functions.tags import Tags
from squall.functions.versions import Versions, published_copy
from squall.runtimes.bytecode import Precompiler
from squall.runtimes.registry import RuntimeRegistry
from squall.store.aliases import AliasRepository
from squall.store.functions import FunctionRepository

log = logging.getLogger("squall.functions")

CREATING = ("The function is being created.", "Creating")
PAGE_MAX = 50


class FunctionService:
    def __init__(
        self,
        repo: FunctionRepository,
        aliases: AliasRepository,
        code: CodeStore,
        versions: Versions,
        tags: Tags,
        runtimes: RuntimeRegistry,
        arns: Arns,
        bus: EventBus,
        code_limits: CodeLimits = CodeLimits(),
        role_usable: Callable[[str], bool] = lambda role: True,
        layers: LayerService | None = None,
        s3_code: S3Code | None = None,
    ) -> None:
        self.repo = repo
        self.aliases = aliases
        self.code = code
        self.versions = versions
        self.tags = tags
        self.runtimes = runtimes
        self.arns = arns
        self.bus = bus
        self.code_limits = code_limits
        self.role_usable = role_usable  # the role exists and trusts Lambda (squall/auth)
        self.layers = layers
        self.s3_code = s3_code  # reads Code.S3Bucket/S3Key (None: refused)
        self._invocable: dict[str, FunctionVersion] = {}
        self._invocable_holds: dict[str, CodeHold] = {}  # the cache holds the code it can serve
        self._missing_code: dict[str, str] = {}  # "name" or "name:version" → what was found missing
        self._code_paths: dict[str, Path] = {}  # code hash → extracted tree (saves pathlib on a miss)
        self._tasks: set[asyncio.Task[None]] = set()
        self._bytecode = Precompiler()
        self._local_code: set[str] = set()  # code hashes whose trees are known to be here
        self.shared_database = False  # other front ends may use the database (PostgreSQL): set by the engine
        # another front end's changes (squall/cluster/relay.py): serve what it committed
        bus.subscribe(FunctionUpdated, self._remote_update)
        bus.subscribe(FunctionDeleted, self._remote_delete)
        bus.subscribe(CachesReset, self._remote_reset)

    # ---- start-up ----------------------------------------------------------------
    async def load(self) -> None:
        """Fill the invoke cache and finish transitions a previous run left half-way.

        Code that a version refers to must be in the store: a missing zip makes the version
        Failed (said loudly, and in /health); a missing tree is extracted again from its zip.
        """
        await asyncio.to_thread(self.code.sweep)
        settings = await asyncio.to_thread(self.repo.function_settings)
        self.tags.load({name: tags for name, (tags, _) in settings.items()})
        for name, (_, reserved) in settings.items():
            if reserved is not None:
                self.bus.publish(ReservedConcurrencyChanged(name, reserved))
        settling: set[str] = set()
        latest_versions = await asyncio.to_thread(self.repo.all_latest)
        published_versions = await asyncio.to_thread(self.repo.published_versions)
        if self.layers is not None:  # merged /opt trees no version uses any more (environments: none yet)
            await asyncio.to_thread(self.layers.sweep, [v.layers for v in (*latest_versions, *published_versions)])
        for version in latest_versions:
            if version.state == State.PENDING or version.last_update_status == UpdateStatus.IN_PROGRESS:
                settling.add(version.name)
                self._spawn(self._settle(version, hold=self.code.hold(version.code.sha256_hex), published=True))
            elif version.state == State.ACTIVE:
                if await self._code_present(version):
                    self._serve(version)
                else:
                    await self._fail_missing_code(version)
        for version in published_versions:
            if version.state == State.PENDING and version.name not in settling:
                self._spawn(self._settle_published(version))
            elif version.state == State.ACTIVE and not await self._code_present(version):
                await self._fail_missing_code(version)

    async def _code_present(self, version: FunctionVersion) -> bool:
        sha = version.code.sha256_hex
        if not await asyncio.to_thread(self.code.has_zip, sha):
            return False
        try:
            await self.code.tree(sha)
            if version.layers and self.layers is not None:
                await self.layers.opt_tree(version.layers)
        except (OSError, LambdaError) as exc:
            log.error("the code of function %s (%s) cannot be extracted again: %s", version.name, sha, exc)
            return False
        return True

    async def _fail_missing_code(self, version: FunctionVersion) -> None:
        path = self.code.blobs.blob_path(version.code.sha256_hex)
        if self.shared_database and self.code.blobs.remote is None:
            # another front end may hold the zip: say so here, but do not fail the shared row
            key = version.name if version.version == LATEST else f"{version.name}:{version.version}"
            self._missing_code[key] = (
                f"The function's code (CodeSha256 {version.code.sha256}) is not on this front end ({path}) and "
                "there is no code bucket: front ends that share a database must share the code bucket "
                "(the code_bucket setting)")
            log.error("function %s: %s", key, self._missing_code[key])
            return
        reason = (
            f"The function's code (CodeSha256 {version.code.sha256}) is missing from this server's code store "
            f"({path}). Upload it again with UpdateFunctionCode."
        )
        key = version.name if version.version == LATEST else f"{version.name}:{version.version}"
        log.error("function %s: %s", key, reason)
        self._missing_code[key] = reason
        failed = dataclasses.replace(version.with_state(State.FAILED, reason, "InternalError"), revision_id=str(uuid.uuid4()))
        await asyncio.to_thread(self.repo.save, failed, version.revision_id)

    # ---- other front ends' changes (one database, several front ends) --------------------
    def _remote_update(self, event: FunctionUpdated) -> None:
        if not self.bus.from_remote:
            return
        served = self._invocable.get(event.name)
        if event.revision is None:
            self._remote_delete(FunctionDeleted(event.name))
        elif served is None or served.revision_id != event.revision:
            self.bus.defer(lambda: self.refresh(event.name), f"function {event.name}")

    def _remote_delete(self, event: FunctionDeleted) -> None:
        if not self.bus.from_remote:
            return
        self._missing_code.pop(event.name, None)
        if event.name in self._invocable:
            self._unserve(event.name)

    def _remote_reset(self, event: CachesReset) -> None:
        if not self.bus.from_remote:
            return

        async def reload_all() -> None:
            latest = {v.name: v for v in await asyncio.to_thread(self.repo.all_latest)}
            for name in list(self._invocable):
                if name not in latest:
                    with self.bus.remote():
                        self._unserve(name)
                        self.bus.publish(FunctionDeleted(name))
            for name in latest:
                await self.refresh(name)

        self.bus.defer(reload_all, "every function")

    async def refresh(self, name: str) -> None:
        """Serve what the database holds for ``name``'s ``$LATEST`` (another front end changed it):
        its code and layers extracted here first (from the code bucket), then served; gone or no
        longer Active: not served."""
        version = await asyncio.to_thread(self.repo.get, name)
        await self.tags.reload(name)
        served = self._invocable.get(name)
        if version is None:
            if served is not None:
                with self.bus.remote():
                    self._unserve(name)
                    self.bus.publish(FunctionDeleted(name))
            return
        self._missing_code.pop(name, None)
        if version.state != State.ACTIVE or (served is not None and served.revision_id == version.revision_id):
            return  # settling elsewhere (its front end tells when it is served), or current already
        if not await self.ensure_local(version):
            return
        with self.bus.remote():
            self._serve(version)

    async def ensure_local(self, version: FunctionVersion) -> bool:
        """The version's code tree (and /opt) extracted on this front end: from the local zip or
        the code bucket. False (logged, in /health) when this front end cannot read the code."""
        sha = version.code.sha256_hex
        if sha in self._local_code and not version.layers:
            return True
        key = version.name if version.version == LATEST else f"{version.name}:{version.version}"
        reason = None
        if not await asyncio.to_thread(self.code.has_zip, sha):
            reason = (f"The function's code (CodeSha256 {version.code.sha256}) is not readable by this front end: "
                      "front ends that share a database must share the code bucket (the code_bucket setting)")
        else:
            ok, reason = await self._prepare(version, None)
        if reason is not None:
            self._missing_code[key] = reason
            log.error("function %s: %s", key, reason)
            return False
        self._local_code.add(sha)
        return True

    def problems(self) -> dict[str, str]:
        """Functions (or versions) found broken at start (their code was missing), and why."""
        return dict(self._missing_code)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def count(self) -> int:
        return len(self._invocable)

    # ---- the invoke cache (the resolver's source for $LATEST) ---------------------------
    def invocable_latest(self, name: str) -> FunctionVersion | None:
        return self._invocable.get(name)

    async def explain_not_invocable(self, name: str, qualifier: str) -> FunctionVersion:
        """Why ``name`` cannot be invoked: unknown (404) or not Active (409) — or, when it became
        invocable meanwhile, its configuration: a settle commits Active to the database, then
        serves it, so a client that read Active may get here first; the database read below
        waits long enough for the settle to serve it."""
        version = await asyncio.to_thread(self.repo.get, name)
        served = self._invocable.get(name)
        if served is not None:
            return served
        if version is not None and version.state == State.ACTIVE and self.shared_database:
            await self.refresh(name)  # made Active on another front end a moment ago: serve it here now
            served = self._invocable.get(name)
            if served is not None:
                return served
            if name in self._missing_code:  # this front end cannot read the code: say why (500)
                raise ServiceError(self._missing_code[name])
        if version is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(name, qualifier)}")
        raise ResourceConflict(
            "The operation cannot be performed at this time. "
            f"The function is currently in the following state: {version.state}"
        )

    def network_of(self, version: FunctionVersion) -> str | None:
        """The network the version's environments join (None: none at all)."""
        return self.tags.networks.network_of(version.vpc_config, self.tags.network_tag(version.name))

    def code_path(self, version: FunctionVersion) -> Path:
        path = self._code_paths.get(version.code.sha256_hex)
        if path is None:
            path = self._code_paths[version.code.sha256_hex] = self.code.tree_path(version.code.sha256_hex)
        return path

    def opt_path(self, version: FunctionVersion) -> Path | None:
        """The merged tree of the version's layers, seen at /opt (None: no layers)."""
        if not version.layers or self.layers is None:
            return None
        return self.layers.opt_path(version.layers)

    def _serve(self, version: FunctionVersion) -> None:
        """Make ``version`` the one invokes of ``$LATEST`` run (holding its code)."""
        hold = self.code.hold(version.code.sha256_hex)
        previous = self._invocable.get(version.name)
        self._invocable[version.name] = version
        previous_hold = self._invocable_holds.pop(version.name, None)
        self._invocable_holds[version.name] = hold
        if previous_hold is not None:
            previous_hold.release()
        if previous is None or previous.revision_id != version.revision_id:
            self.bus.publish(FunctionUpdated(version.name, version.revision_id))

    def _unserve(self, name: str) -> None:
        self._invocable.pop(name, None)
        hold = self._invocable_holds.pop(name, None)
        if hold is not None:
            hold.release()

    # ---- reads -------------------------------------------------------------------
    async def describe(self, ref: FunctionRef) -> tuple[FunctionVersion, str | None | bool]:
        """The configuration GetFunction(Configuration) shows, and what its FunctionArn ends
        with: nothing for an unqualified name, else the qualifier as asked (an alias's name,
        ``$LATEST``, a version)."""
        if ref.qualifier is None:
            version = await asyncio.to_thread(self.repo.get, ref.name)
            if version is None:
                raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
            return version, None
        if ref.qualifier == LATEST or is_version(ref.qualifier):
            version = await asyncio.to_thread(self.repo.get, ref.name, ref.qualifier)
            if version is None:
                raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
            return version, ref.qualifier
        alias = await asyncio.to_thread(self.aliases.get, ref.name, ref.qualifier)
        version = None if alias is None else await asyncio.to_thread(self.repo.get, ref.name, alias.function_version)
        if version is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
        return version, ref.qualifier

    async def page(
        self, marker: str | None, max_items: int | None, all_versions: bool = False
    ) -> tuple[list[FunctionVersion], str | None]:
        limit = PAGE_MAX if max_items is None else min(max_items, PAGE_MAX)
        return await asyncio.to_thread(self.repo.page, marker, limit, all_versions)

    # ---- writes ------------------------------------------------------------------
    async def create(self, params: dict[str, Any]) -> FunctionVersion:
        """A new function; the configuration shown is version 1's with ``Publish``."""
        ref = self.arns.parse_new(params["FunctionName"])
        if params.get("PackageType", "Zip") != "Zip":
            raise InvalidParameterValue("Squall runs Zip packages; container images (PackageType Image) are not supported.")
        for required in ("Runtime", "Handler"):
            if not params.get(required):
                raise InvalidParameterValue(f"{required} is required for the Zip package type.")
        runtime = self.runtimes.get(params["Runtime"])
        if runtime.warning:
            log.warning("function %s: %s", ref.name, runtime.warning)
        fields = self._settings(params, None)
        if "logging_config" in fields:
            fields["logging_config"] = merged_logging({}, fields["logging_config"])
        tags = dict(params.get("Tags") or {})
        self.tags.validate(tags)
        package = await self._package(params.get("Code") or {})
        if "Layers" in params:
            fields["layers"] = await self._layers(params["Layers"], package.unzipped_size)
        version = FunctionVersion(
            name=ref.name,
            runtime=runtime.identifier,
            code=Code(package.sha256, package.sha256_hex, package.size, package.unzipped_size),
            **fields,
        )
        published = published_copy(version, 1, None) if params.get("Publish") else None
        hold = self.code.hold(package.sha256_hex)  # until the version is settled: see code_store
        try:
            await self.code.put(package)
            await asyncio.to_thread(self.repo.create, version, tags, published)
        except BaseException:
            hold.release()
            self._spawn(self.code.collect([package.sha256_hex]))  # stored for nothing, maybe
            raise
        self.tags.remember(version.name, tags)
        self._spawn(self._settle(version, package, hold, published=published is not None))
        return published or version

    async def update_code(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        """The new ``$LATEST`` (InProgress), or with ``Publish`` the new version (Pending)."""
        current = await self._updatable(ref, params.get("RevisionId"))
        if params.get("ImageUri"):
            raise InvalidParameterValue("Please don't provide ImageUri when updating a function with packageType Zip.")
        package = await self._package(params)
        if params.get("Architectures"):
            validate_settings({"Architectures": params["Architectures"]})
        if self.layers is not None:
            self.layers.check_size(package.unzipped_size, current.layers)
        updated = current.changed(
            code=Code(package.sha256, package.sha256_hex, package.size, package.unzipped_size),
            architectures=tuple(params.get("Architectures") or current.architectures),
        ).with_update_status(UpdateStatus.IN_PROGRESS, *CREATING)
        if updated.state == State.FAILED:  # new code can mend a function that failed (e.g. its code was lost)
            updated = updated.with_state(State.PENDING, *CREATING)
        publish = None
        if params.get("Publish"):
            def publish(number: int) -> FunctionVersion:
                return published_copy(updated, number, None)

        hold = self.code.hold(package.sha256_hex)  # until the version is settled: see code_store
        try:
            await self.code.put(package)
            published = await self._concurrently(
                params, self.repo.update_and_publish, updated, current.revision_id, publish
            )
        except BaseException:
            hold.release()
            self._spawn(self.code.collect([package.sha256_hex]))
            raise
        self._missing_code.pop(updated.name, None)
        self._spawn(self._settle(updated, package, hold, replaced=current.code.sha256_hex, published=published is not None))
        return published or updated

    async def update_configuration(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        current = await self._updatable(ref, params.get("RevisionId"))
        fields = self._settings(params, current)
        if "Runtime" in params:
            fields["runtime"] = self.runtimes.get(params["Runtime"]).identifier
        if "logging_config" in fields:
            fields["logging_config"] = merged_logging(current.logging_config, fields["logging_config"])
        if "Layers" in params:
            fields["layers"] = await self._layers(params["Layers"], current.code.unzipped_size)
        updated = current.changed(**fields).with_update_status(UpdateStatus.IN_PROGRESS, *CREATING)
        await self._concurrently(params, self.repo.save, updated, current.revision_id)
        self._spawn(self._settle(updated))
        if self.layers is not None and current.layers != updated.layers:
            self._spawn(self.layers.purge())  # a deleted layer version this one no longer uses
        return updated

    async def delete(self, ref: FunctionRef) -> None:
        """DeleteFunction: the whole function, or with a qualifier one published version."""
        if ref.qualifier is not None:
            await self.versions.delete(ref.name, ref.qualifier)
            if self.layers is not None:
                await self.layers.purge()  # deleted layer versions only that version used
            return
        hashes = await asyncio.to_thread(self.repo.delete, ref.name)
        if not hashes:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        self._unserve(ref.name)
        self._missing_code = {k: v for k, v in self._missing_code.items() if k.split(":")[0] != ref.name}
        self.bus.publish(FunctionDeleted(ref.name))  # environments stop (busy ones after their invocation)
        for sha in hashes:
            self._code_paths.pop(sha, None)
        await self.code.collect(hashes)
        if self.layers is not None:
            await self.layers.purge()  # deleted layer versions only this function used

    # ---- internals ---------------------------------------------------------------
    def _settings(self, params: dict[str, Any], current: FunctionVersion | None) -> dict[str, Any]:
        fields = validate_settings(params)
        if fields.get("tracing_mode") == "Active":  # recorded and shown; honoured once tracing lands
            log.warning("function %s: TracingConfig Active is recorded but Squall exports no traces yet",
                        params.get("FunctionName"))
        if "role" in fields and not self.role_usable(fields["role"]):
            raise InvalidParameterValue("The role defined for the function cannot be assumed by Lambda.")
        if "vpc_config" in fields:
            vpc = self.tags.networks.check_vpc(fields["vpc_config"])
            if vpc["SubnetIds"] or (current is not None and current.vpc_config is not None):
                fields["vpc_config"] = vpc  # in a VPC, or leaving one (shown empty from then on)
            else:
                del fields["vpc_config"]  # "no VPC" of a function that never had one
        return fields

    async def _layers(self, arns: list[str], code_unzipped: int) -> tuple[LayerUse, ...]:
        if not arns:
            return ()
        if self.layers is None:
            raise InvalidParameterValue("Layers are not served by this Squall server.")
        uses = await self.layers.resolve(arns)
        self.layers.check_size(code_unzipped, uses)
        return uses

    async def _updatable(self, ref: FunctionRef, revision_id: str | None) -> FunctionVersion:
        if ref.qualifier is not None:
            raise InvalidParameterValue("Only $LATEST can be updated: use the function's name without a qualifier.")
        current = await asyncio.to_thread(self.repo.get, ref.name)
        if current is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        if revision_id is not None and revision_id != current.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        current.ensure_updatable(self.arns.function(current.name))
        return current

    async def _concurrently(self, params: dict[str, Any], write: Any, updated: FunctionVersion, *args: Any) -> Any:
        """Write an update; one that another update overtook (the RevisionId it read changed,
        though the caller sent none) is Lambda's "update in progress", not a failed precondition."""
        try:
            return await asyncio.to_thread(write, updated, *args)
        except PreconditionFailed:
            if params.get("RevisionId") is not None:
                raise
            raise ResourceConflict(
                "The operation cannot be performed at this time. "
                f"An update is in progress for resource: {self.arns.function(updated.name)}"
            ) from None

    async def _package(self, code: dict[str, Any]) -> CodePackage:
        if code.get("ImageUri"):
            raise InvalidParameterValue("Squall runs Zip packages; ImageUri is not supported.")
        data = code.get("ZipFile")
        from_s3 = code.get("S3Bucket") or code.get("S3Key")
        if data and from_s3:
            raise InvalidParameterValue("Please provide only one source for function code: ZipFile or S3Bucket/S3Key.")
        if from_s3:
            if self.s3_code is None:
                raise InvalidParameterValue("This server reads no code from S3: upload the zip itself (Code.ZipFile).")
            return await self.s3_code.package(code.get("S3Bucket"), code.get("S3Key"), code.get("S3ObjectVersion"))
        if not data:
            raise InvalidParameterValue("Please provide a source for function code (ZipFile, or S3Bucket and S3Key).")
        return await asyncio.to_thread(inspect_zip, data, self.code_limits)

    async def _settle(
        self,
        version: FunctionVersion,
        package: CodePackage | None = None,
        hold: CodeHold | None = None,
        replaced: str | None = None,
        published: bool = False,
    ) -> None:
        """Unpack the code, then move ``$LATEST`` (and, with ``published``, the version
        published with it) to Active / Successful (or Failed).

        ``hold``: the upload's hold on the code, let go here once the cache holds it (or the
        function is gone); ``replaced``: the code the update replaced, collected if unused now.
        """
        current = False
        try:
            ok, reason = await self._prepare(version, package)
            current = await self._settled(version, ok, reason, published)
        finally:
            if hold is not None:
                hold.release()
            stale = set() if current else {version.code.sha256_hex}  # deleted or superseded meanwhile
            if replaced is not None and replaced != version.code.sha256_hex:
                stale.add(replaced)
            if stale:  # code nothing may refer to any more (asked only when that may be so)
                await self.code.collect(stale)

    async def _prepare(self, version: FunctionVersion, package: CodePackage | None) -> tuple[bool, str | None]:
        try:
            tree = await self.code.tree(version.code.sha256_hex, package)
            opt = None
            if version.layers and self.layers is not None:
                opt = await self.layers.opt_tree(version.layers)  # /opt, merged once, before it is Active
            if version.runtime in self.runtimes.identifiers():  # else its invokes say what is missing
                runtime = self.runtimes.get(version.runtime)
                await self._bytecode.ensure(runtime, tree)
                if opt is not None:  # the layers' modules too: /opt is read-only in the sandbox
                    await self._bytecode.ensure(runtime, opt)
            return True, None
        except LambdaError as exc:
            return False, exc.message
        except OSError as exc:
            log.exception("unpacking code of %s failed", version.name)
            return False, f"Squall could not unpack the code: {exc}"

    async def _settled(self, version: FunctionVersion, ok: bool, reason: str | None, published: bool) -> bool:
        """Save the transition; False when the function was deleted or superseded meanwhile."""
        for _ in range(5):  # a tag change may overtake us (it changes the RevisionId): read again
            latest = await asyncio.to_thread(self.repo.get, version.name)
            if latest is None or latest.code.sha256_hex != version.code.sha256_hex or not _unsettled(latest):
                return False
            settled = _transition(latest, ok, reason)
            pending = [
                _transition(v, ok, reason)
                for v in (await asyncio.to_thread(self.repo.versions_of, version.name) if published else ())
                if v.version != LATEST and v.state == State.PENDING and v.code.sha256_hex == version.code.sha256_hex
            ]
            try:
                await asyncio.to_thread(self.repo.save, settled, latest.revision_id, *pending)
            except PreconditionFailed:
                continue
            if settled.state == State.ACTIVE and settled.last_update_status != UpdateStatus.FAILED:
                self._serve(settled)
            return True
        return True

    async def _settle_published(self, version: FunctionVersion) -> None:
        """A version a previous run left Pending (its $LATEST moved on meanwhile)."""
        hold = self.code.hold(version.code.sha256_hex)
        try:
            ok, reason = await self._prepare(version, None)
            await asyncio.to_thread(self.repo.save, _transition(version, ok, reason), version.revision_id)
        finally:
            hold.release()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _unsettled(version: FunctionVersion) -> bool:
    return version.state == State.PENDING or version.last_update_status == UpdateStatus.IN_PROGRESS


def _transition(version: FunctionVersion, ok: bool, reason: str | None) -> FunctionVersion:
    """Pending → Active (or Failed), InProgress → Successful (or Failed), with a new RevisionId."""
    settled = version
    if version.state == State.PENDING:
        settled = settled.with_state(State.ACTIVE) if ok else settled.with_state(State.FAILED, reason, "InvalidZipFileException")
    if version.version == LATEST and version.last_update_status in (None, UpdateStatus.IN_PROGRESS):
        settled = (
            settled.with_update_status(UpdateStatus.SUCCESSFUL)
            if ok
            else settled.with_update_status(UpdateStatus.FAILED, reason, "InvalidZipFileException")
        )
    elif ok:  # a published version keeps its RevisionId
        return settled.with_update_status(UpdateStatus.SUCCESSFUL)
    else:
        return settled
    return dataclasses.replace(settled, revision_id=str(uuid.uuid4()))
