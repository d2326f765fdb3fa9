"""The control plane of functions: create, read, update, delete, list.

The store is the source of truth; an in-memory map of each function's invocable ``$LATEST``
serves the invoke path without touching the database. State transitions are real:
CreateFunction answers ``Pending`` and the code is unpacked in the background before the
function becomes ``Active``; updates go ``InProgress`` → ``Successful`` (or ``Failed``)
while invokes keep using the previous configuration until the new one is ready.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from squall.arn import LATEST, Arns, FunctionRef, parse_function_name
from squall.code import CodeLimits, CodePackage, inspect_zip
from squall.functions.code_store import CodeHold, CodeStore
from squall.invoke.concurrency import ConcurrencyLimits
from squall.errors import InvalidParameterValue, LambdaError, PreconditionFailed, ResourceConflict, ResourceNotFound
from squall.function import Code, FunctionVersion, State, UpdateStatus, validate_settings
from squall.runtimes.bytecode import Precompiler
from squall.runtimes.registry import RuntimeRegistry
from squall.store.functions import FunctionRepository

log = logging.getLogger("squall.functions")

NETWORK_TAG = "squall:network"  # "none": the function gets no network at all


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > 50:
        raise InvalidParameterValue("A function can have at most 50 tags.")
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(f"Tag keys starting with 'aws:' are reserved: {key}")
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise InvalidParameterValue("Tag keys must be 1-128 characters and values at most 256 characters.")
    if tags.get(NETWORK_TAG, "none") not in ("none", "default"):
        raise InvalidParameterValue(f"Tag {NETWORK_TAG} must be 'none' (no network) or 'default'.")


class FunctionService:
    def __init__(
        self,
        repo: FunctionRepository,
        code: CodeStore,
        runtimes: RuntimeRegistry,
        arns: Arns,
        concurrency: ConcurrencyLimits,
        on_change: Callable[[str, str | None], None] = lambda name, revision: None,
        code_limits: CodeLimits = CodeLimits(),
    ) -> None:
        self.repo = repo
        self.code = code
        self.runtimes = runtimes
        self.arns = arns
        self.on_change = on_change  # (name, revision now invocable or None when deleted)
        self.code_limits = code_limits
        self.concurrency = concurrency
        self._invocable: dict[str, FunctionVersion] = {}
        self._invocable_holds: dict[str, CodeHold] = {}  # the cache holds the code it can serve
        self._missing_code: dict[str, str] = {}  # function → what was found missing at start
        self._tags: dict[str, dict[str, str]] = {}
        self._code_paths: dict[str, Path] = {}  # code hash → extracted tree (saves pathlib on invoke)
        self._tasks: set[asyncio.Task[None]] = set()
        self._bytecode = Precompiler()

    # ---- start-up ----------------------------------------------------------------
    async def load(self) -> None:
        """Fill the invoke cache and finish transitions a previous run left half-way.

        Code that a version refers to must be in the store: a missing zip makes the function
        Failed (said loudly, and in /health); a missing tree is extracted again from its zip.
        """
        await asyncio.to_thread(self.code.sweep)
        for name, (tags, reserved) in (await asyncio.to_thread(self.repo.function_settings)).items():
            self._tags[name] = tags
            if reserved is not None:
                self.concurrency.reserve(name, reserved)
        for version in await asyncio.to_thread(self.repo.all_latest):
            if version.state == State.PENDING or version.last_update_status == UpdateStatus.IN_PROGRESS:
                self._spawn(self._settle(version, hold=self.code.hold(version.code.sha256_hex)))
            elif version.state == State.ACTIVE:
                if await self._code_present(version):
                    self._serve(version)
                else:
                    await self._fail_missing_code(version)

    async def _code_present(self, version: FunctionVersion) -> bool:
        sha = version.code.sha256_hex
        if not await asyncio.to_thread(self.code.has_zip, sha):
            return False
        try:
            await self.code.tree(sha)
        except (OSError, LambdaError) as exc:
            log.error("the code of function %s (%s) cannot be extracted again: %s", version.name, sha, exc)
            return False
        return True

    async def _fail_missing_code(self, version: FunctionVersion) -> None:
        path = self.code.blobs.blob_path(version.code.sha256_hex)
        reason = (
            f"The function's code (CodeSha256 {version.code.sha256}) is missing from this server's code store "
            f"({path}). Upload it again with UpdateFunctionCode."
        )
        log.error("function %s: %s", version.name, reason)
        self._missing_code[version.name] = reason
        failed = version.with_state(State.FAILED, reason, "InternalError")
        await asyncio.to_thread(self.repo.save, failed, version.revision_id)

    def problems(self) -> dict[str, str]:
        """Functions found broken at start (their code was missing), and why."""
        return dict(self._missing_code)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def count(self) -> int:
        return len(self._invocable)

    def _serve(self, version: FunctionVersion) -> None:
        """Make ``version`` the one invokes of its function run (holding its code)."""
        hold = self.code.hold(version.code.sha256_hex)
        self._invocable[version.name] = version
        previous = self._invocable_holds.pop(version.name, None)
        self._invocable_holds[version.name] = hold
        if previous is not None:
            previous.release()

    def _unserve(self, name: str) -> None:
        self._invocable.pop(name, None)
        hold = self._invocable_holds.pop(name, None)
        if hold is not None:
            hold.release()

    # ---- reads -------------------------------------------------------------------
    async def invocable(self, ref: FunctionRef) -> FunctionVersion:
        """The configuration an invoke runs with: no I/O when the function is invocable."""
        version = self._invocable.get(ref.name)
        if ref.qualifier not in (None, LATEST) or version is None:
            return await self._not_invocable(ref)
        return version

    async def _not_invocable(self, ref: FunctionRef) -> FunctionVersion:
        if ref.qualifier not in (None, LATEST):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
        # Known but not invocable yet (Pending or Failed) vs unknown: the cache cannot tell;
        # the store can, and this path is not the hot one.
        version = await asyncio.to_thread(self.repo.get, ref.name)
        if version is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        raise ResourceConflict(
            "The operation cannot be performed at this time. "
            f"The function is currently in the following state: {version.state}"
        )

    async def get(self, ref: FunctionRef) -> FunctionVersion:
        if ref.qualifier not in (None, LATEST):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
        version = await asyncio.to_thread(self.repo.get, ref.name)
        if version is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        return version

    def network_enabled(self, name: str) -> bool:
        """False when the function is tagged ``squall:network`` = ``none``."""
        return self._tags.get(name, {}).get(NETWORK_TAG) != "none"

    async def tags(self, name: str) -> dict[str, str]:
        return await asyncio.to_thread(self.repo.tags, name)

    async def tag(self, ref: FunctionRef, tags: dict[str, str]) -> None:
        validate_tags(tags)
        version = await self.get(ref)
        merged = {**await self.tags(version.name), **tags}
        await self._store_tags(version.name, merged)

    async def untag(self, ref: FunctionRef, keys: list[str]) -> None:
        version = await self.get(ref)
        current = await self.tags(version.name)
        await self._store_tags(version.name, {k: v for k, v in current.items() if k not in keys})

    async def _store_tags(self, name: str, tags: dict[str, str]) -> None:
        network_before = self.network_enabled(name)
        await asyncio.to_thread(self.repo.set_tags, name, tags)
        self._tags[name] = tags
        if self.network_enabled(name) != network_before:
            self.on_change(name, None)  # environments must be recreated with the new sandbox

    # ---- concurrency -------------------------------------------------------------
    async def put_concurrency(self, ref: FunctionRef, value: int) -> None:
        version = await self.get(ref)
        self.concurrency.check_reservation(version.name, value)
        await asyncio.to_thread(self.repo.set_reserved_concurrency, version.name, value)
        self.concurrency.reserve(version.name, value)

    async def delete_concurrency(self, ref: FunctionRef) -> None:
        version = await self.get(ref)
        await asyncio.to_thread(self.repo.set_reserved_concurrency, version.name, None)
        self.concurrency.reserve(version.name, None)

    async def get_concurrency(self, ref: FunctionRef) -> int | None:
        version = await self.get(ref)
        return self.concurrency.reserved.get(version.name)

    async def page(self, marker: str | None, max_items: int | None) -> tuple[list[FunctionVersion], str | None]:
        limit = 50 if max_items is None else max_items
        if not 1 <= limit <= 10000:
            raise InvalidParameterValue("MaxItems must be between 1 and 10000")
        return await asyncio.to_thread(self.repo.page, marker, min(limit, 50))

    def code_path(self, version: FunctionVersion) -> Path:
        path = self._code_paths.get(version.code.sha256_hex)
        if path is None:
            path = self._code_paths[version.code.sha256_hex] = self.code.tree_path(version.code.sha256_hex)
        return path

    # ---- writes ------------------------------------------------------------------
    async def create(self, params: dict[str, Any]) -> FunctionVersion:
        ref = parse_function_name(params["FunctionName"])
        if ref.qualifier is not None:
            raise InvalidParameterValue("FunctionName must not carry a qualifier in CreateFunction")
        if params.get("PackageType", "Zip") != "Zip":
            raise InvalidParameterValue("Squall runs Zip packages; container images (PackageType Image) are not supported.")
        for required in ("Runtime", "Handler"):
            if not params.get(required):
                raise InvalidParameterValue(f"{required} is required for the Zip package type.")
        runtime = self.runtimes.get(params["Runtime"])
        fields = validate_settings(params)
        package = await self._package(params.get("Code") or {})
        version = FunctionVersion(
            name=ref.name,
            runtime=runtime.identifier,
            code=Code(package.sha256, package.sha256_hex, package.size),
            **fields,
        )
        tags = dict(params.get("Tags") or {})
        validate_tags(tags)
        hold = self.code.hold(package.sha256_hex)  # until the version is settled: see code_store
        try:
            await self.code.put(package)
            await asyncio.to_thread(self.repo.create, version, tags)
        except BaseException:
            hold.release()
            self._spawn(self.code.collect([package.sha256_hex]))  # stored for nothing, maybe
            raise
        self._tags[version.name] = tags
        self._spawn(self._settle(version, package, hold))
        return version

    async def update_code(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        current = await self._updatable(ref, params.get("RevisionId"))
        if params.get("ImageUri"):
            raise InvalidParameterValue("Squall runs Zip packages; ImageUri is not supported.")
        package = await self._package(params)
        if params.get("Architectures"):
            validate_settings({"Architectures": params["Architectures"]})
        updated = current.changed(
            code=Code(package.sha256, package.sha256_hex, package.size),
            architectures=tuple(params.get("Architectures") or current.architectures),
        ).with_update_status(UpdateStatus.IN_PROGRESS, "The function is being created.", "Creating")
        if updated.state == State.FAILED:  # new code can mend a function that failed (e.g. its code was lost)
            updated = updated.with_state(State.PENDING, "The function is being created.", "Creating")
        hold = self.code.hold(package.sha256_hex)  # until the version is settled: see code_store
        try:
            await self.code.put(package)
            await asyncio.to_thread(self.repo.save, updated, current.revision_id)
        except BaseException:
            hold.release()
            self._spawn(self.code.collect([package.sha256_hex]))
            raise
        self._missing_code.pop(updated.name, None)
        self._spawn(self._settle(updated, package, hold, replaced=current.code.sha256_hex))
        return updated

    async def update_configuration(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        current = await self._updatable(ref, params.get("RevisionId"))
        fields = validate_settings(params)
        if "Runtime" in params:
            fields["runtime"] = self.runtimes.get(params["Runtime"]).identifier
        updated = current.changed(**fields).with_update_status(
            UpdateStatus.IN_PROGRESS, "The function is being created.", "Creating"
        )
        await asyncio.to_thread(self.repo.save, updated, current.revision_id)
        self._spawn(self._settle(updated))
        return updated

    async def delete(self, ref: FunctionRef) -> None:
        if ref.qualifier not in (None, LATEST):
            raise InvalidParameterValue("Deleting a published version is not supported: Squall has only $LATEST yet.")
        if ref.qualifier == LATEST:
            raise InvalidParameterValue("$LATEST version cannot be deleted without deleting the function.")
        hashes = await asyncio.to_thread(self.repo.delete, ref.name)
        if not hashes:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        self._unserve(ref.name)
        self._tags.pop(ref.name, None)
        self._missing_code.pop(ref.name, None)
        self.concurrency.reserve(ref.name, None)
        self.on_change(ref.name, None)  # its environments stop (busy ones after their invocation)
        for sha in hashes:
            self._code_paths.pop(sha, None)
        await self.code.collect(hashes)

    # ---- internals ---------------------------------------------------------------
    async def _updatable(self, ref: FunctionRef, revision_id: str | None) -> FunctionVersion:
        if ref.qualifier not in (None, LATEST):
            raise InvalidParameterValue("Only $LATEST can be updated.")
        current = await self.get(FunctionRef(ref.name))
        if revision_id is not None and revision_id != current.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        current.ensure_updatable(self.arns.function(current.name))
        return current

    async def _package(self, code: dict[str, Any]) -> CodePackage:
        if code.get("S3Bucket") or code.get("S3Key"):
            raise InvalidParameterValue(
                "Squall does not read code from S3 yet: upload the zip itself (Code.ZipFile, or `squall deploy`)."
            )
        if code.get("ImageUri"):
            raise InvalidParameterValue("Squall runs Zip packages; ImageUri is not supported.")
        data = code.get("ZipFile")
        if not data:
            raise InvalidParameterValue("Please provide a source for function code (ZipFile).")
        return await asyncio.to_thread(inspect_zip, data, self.code_limits)

    async def _settle(
        self,
        version: FunctionVersion,
        package: CodePackage | None = None,
        hold: CodeHold | None = None,
        replaced: str | None = None,
    ) -> None:
        """Unpack the code, then move the version to Active / Successful (or Failed).

        ``hold``: the upload's hold on the code, let go here once the cache holds it (or the
        version is gone); ``replaced``: the code the update replaced, collected if unused now.
        """
        try:
            await self._settle_held(version, package)
        finally:
            if hold is not None:
                hold.release()
            stale = {sha for sha in (replaced, version.code.sha256_hex) if sha is not None}
            await self.code.collect(stale)  # whatever nothing refers to any more

    async def _settle_held(self, version: FunctionVersion, package: CodePackage | None) -> None:
        try:
            tree = await self.code.tree(version.code.sha256_hex, package)
            if version.runtime in self.runtimes.identifiers():  # else its invokes say what is missing
                await self._bytecode.ensure(self.runtimes.get(version.runtime), tree)
            ok, reason = True, None
        except LambdaError as exc:
            ok, reason = False, exc.message
        except OSError as exc:
            log.exception("unpacking code of %s failed", version.name)
            ok, reason = False, f"Squall could not unpack the code: {exc}"
        latest = await asyncio.to_thread(self.repo.get, version.name)
        if latest is None or latest.revision_id != version.revision_id:
            return  # deleted or superseded meanwhile
        settled = latest
        if latest.state == State.PENDING:
            settled = (
                settled.with_state(State.ACTIVE)
                if ok
                else settled.with_state(State.FAILED, reason, "InvalidZipFileException")
            )
        if latest.last_update_status in (None, UpdateStatus.IN_PROGRESS):  # None: the creation itself
            settled = (
                settled.with_update_status(UpdateStatus.SUCCESSFUL)
                if ok
                else settled.with_update_status(UpdateStatus.FAILED, reason, "InvalidZipFileException")
            )
        await asyncio.to_thread(self.repo.save, settled, latest.revision_id)
        if settled.state == State.ACTIVE and settled.last_update_status != UpdateStatus.FAILED:
            previous = self._invocable.get(settled.name)
            self._serve(settled)
            if previous is not None and previous.revision_id != settled.revision_id:
                self.on_change(settled.name, settled.revision_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
