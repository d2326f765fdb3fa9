"""Published versions: immutable snapshots of ``$LATEST``'s code and configuration.

PublishVersion copies ``$LATEST`` into version N (numbers start at 1, go up, and are never
reused). Publishing when nothing changed since the last published version returns that
version instead of a new one, as on Lambda; the comparison is against the ``$LATEST`` the
last version was copied from (its fingerprint), so a version's own Description does not
count. Publishing changes ``$LATEST``'s RevisionId.

A version aliases point at cannot be deleted; a version that does not exist is deleted
without complaint (204), as on AWS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.engine.bus import EventBus, VersionDeleted, VersionPublished
from squall.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from squall.function import FunctionVersion, State, UpdateStatus, lambda_timestamp
from squall.functions.code_store import CodeStore
from squall.paging import decode_marker, encode_marker
from squall.store.functions import FunctionRepository, VersionInUse

PAGE_MAX = 50


def published_copy(latest: FunctionVersion, number: int, description: str | None) -> FunctionVersion:
    """Version ``number`` of ``latest``: Active at once when ``$LATEST`` is, else Pending with it."""
    ready = latest.state == State.ACTIVE and latest.last_update_status != UpdateStatus.IN_PROGRESS
    copy = dataclasses.replace(
        latest,
        version=str(number),
        description=latest.description if description is None else description,
        revision_id=str(uuid.uuid4()),
        last_modified=lambda_timestamp(),
        published_from=latest.fingerprint(),
        state=State.ACTIVE if ready else State.PENDING,
        state_reason=None if ready else "The function is being created.",
        state_reason_code=None if ready else "Creating",
        last_update_status=UpdateStatus.SUCCESSFUL if ready else None,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
    )
    return copy


class Versions:
    def __init__(self, repo: FunctionRepository, code: CodeStore, arns: Arns, bus: EventBus) -> None:
        self.repo = repo
        self.code = code
        self.arns = arns
        self.bus = bus

    async def publish(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        if ref.qualifier is not None:
            raise InvalidParameterValue("PublishVersion takes an unqualified function name.")
        expected_sha = params.get("CodeSha256")
        description = params.get("Description")
        latest = await asyncio.to_thread(self.repo.get, ref.name)
        if latest is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        latest.ensure_updatable(self.arns.function(ref.name))

        def build(current: FunctionVersion, last: FunctionVersion | None, number: int) -> FunctionVersion | None:
            current.ensure_updatable(self.arns.function(ref.name))
            if expected_sha is not None and expected_sha != current.code.sha256:
                raise InvalidParameterValue(
                    f"CodeSHA256 ({expected_sha}) is different from current CodeSHA256 in $LATEST "
                    f"({current.code.sha256}). Please try again with the CodeSHA256 in $LATEST."
                )
            if last is not None and last.published_from == current.fingerprint():
                return None
            return published_copy(current, number, description)

        def rebased(current: FunctionVersion) -> FunctionVersion:
            return dataclasses.replace(current, revision_id=str(uuid.uuid4()))

        outcome = await asyncio.to_thread(self.repo.publish, ref.name, params.get("RevisionId"), build, rebased)
        if outcome is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        version, created = outcome
        if created:
            self.bus.publish(VersionPublished(version.name, version.version))
        return version

    async def get(self, name: str, version: str) -> FunctionVersion:
        found = await asyncio.to_thread(self.repo.get, name, version)
        if found is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(name, version)}")
        return found

    async def page(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[FunctionVersion], str | None]:
        """ListVersionsByFunction: ``$LATEST`` first, then ascending; at most 50 a page."""
        everything = await asyncio.to_thread(self.repo.versions_of, ref.name)
        if not everything:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        start = 0
        if marker:
            after = decode_marker(marker)
            start = next((i + 1 for i, v in enumerate(everything) if v.version == after), len(everything))
        limit = min(max_items or PAGE_MAX, PAGE_MAX)
        page = everything[start:start + limit]
        more = start + limit < len(everything)
        return page, (encode_marker(page[-1].version) if more and page else None)

    async def delete(self, name: str, version: str) -> None:
        """DeleteFunction with a version qualifier."""
        if version == LATEST:
            raise InvalidParameterValue("$LATEST version cannot be deleted without deleting the function.")
        if not is_version(version):
            raise InvalidParameterValue("Deletion of aliases is not currently supported.")
        if not await asyncio.to_thread(self.repo.exists, name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(name)}")
        try:
            sha = await asyncio.to_thread(self.repo.delete_version, name, version)
        except VersionInUse as exc:
            raise ResourceConflict(
                f"Unable to delete version because the following aliases reference it: [{', '.join(exc.aliases)}]"
            ) from None
        if sha is None:
            return  # AWS: deleting a version that does not exist succeeds
        self.bus.publish(VersionDeleted(name, version))
        await self.code.collect([sha])

