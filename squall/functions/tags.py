"""Tags on functions (TagResource, UntagResource, ListTags), and the one Squall reads itself.

``squall:network`` = ``none`` gives the function's environments no network at all; changing
it publishes ``SandboxSettingsChanged`` so that they are rebuilt. Tags belong to the function,
not to a version or an alias. Tagging changes the function's RevisionId, as on AWS.
"""

from __future__ import annotations

import asyncio

from squall.arn import Arns, FunctionRef
from squall.engine.bus import EventBus, FunctionDeleted, SandboxSettingsChanged
from squall.errors import InvalidParameterValue, ResourceNotFound
from squall.store.functions import FunctionRepository

NETWORK_TAG = "squall:network"  # "none": the function gets no network at all
TAGS_MAX = 50
QUALIFIED = "Tags on function aliases and versions are not supported. Please specify a function ARN."


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > TAGS_MAX:
        raise InvalidParameterValue("Number of tags exceeds resource tag limit.")
    for key in tags:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(f"Tag keys starting with 'aws:' are reserved: {key}")
    if tags.get(NETWORK_TAG, "none") not in ("none", "default"):
        raise InvalidParameterValue(f"Tag {NETWORK_TAG} must be 'none' (no network) or 'default'.")


class Tags:
    def __init__(self, repo: FunctionRepository, arns: Arns, bus: EventBus) -> None:
        self.repo = repo
        self.arns = arns
        self.bus = bus
        self._network_off: set[str] = set()  # functions tagged squall:network=none
        bus.subscribe(FunctionDeleted, lambda event: self._network_off.discard(event.name))

    def load(self, tags: dict[str, dict[str, str]]) -> None:
        self._network_off = {name for name, t in tags.items() if t.get(NETWORK_TAG) == "none"}

    def remember(self, name: str, tags: dict[str, str]) -> None:
        """A new function's tags (stored with it)."""
        if tags.get(NETWORK_TAG) == "none":
            self._network_off.add(name)

    def network_enabled(self, name: str) -> bool:
        return name not in self._network_off

    async def list(self, ref: FunctionRef) -> dict[str, str]:
        self._unqualified(ref)
        if not await asyncio.to_thread(self.repo.exists, ref.name):
            raise self._missing(ref)
        return await asyncio.to_thread(self.repo.tags, ref.name)

    async def tag(self, ref: FunctionRef, tags: dict[str, str]) -> None:
        self._unqualified(ref)
        if not tags:
            raise InvalidParameterValue("An error occurred and the request cannot be processed.")
        await self._change(ref, lambda current: {**current, **tags})

    async def untag(self, ref: FunctionRef, keys: list[str]) -> None:
        self._unqualified(ref)
        await self._change(ref, lambda current: {k: v for k, v in current.items() if k not in keys})

    async def _change(self, ref: FunctionRef, edit) -> None:  # type: ignore[no-untyped-def]
        def change() -> dict[str, str] | None:
            return self.repo.change_tags(ref.name, lambda current: _checked(edit(current)))

        tags = await asyncio.to_thread(change)
        if tags is None:
            raise self._missing(ref)
        network_off = tags.get(NETWORK_TAG) == "none"
        if network_off != (ref.name in self._network_off):
            (self._network_off.add if network_off else self._network_off.discard)(ref.name)
            self.bus.publish(SandboxSettingsChanged(ref.name))  # environments are rebuilt with it

    def _unqualified(self, ref: FunctionRef) -> None:
        if ref.qualifier is not None:
            raise InvalidParameterValue(QUALIFIED)

    def _missing(self, ref: FunctionRef) -> ResourceNotFound:
        return ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")


def _checked(tags: dict[str, str]) -> dict[str, str]:
    validate_tags(tags)
    return tags
