"""Tags on functions (TagResource, UntagResource, ListTags), and the one Squall reads itself.

``squall:network`` puts the function's environments on a network (``none``: none at all;
see ``network.py``); changing it publishes ``SandboxSettingsChanged`` so that they are rebuilt. Tags belong to the function,
not to a version or an alias. Tagging changes the function's RevisionId, as on AWS.
"""

from __future__ import annotations

import asyncio

from squall.arn import Arns, FunctionRef
from squall.engine.bus import EventBus, FunctionDeleted, SandboxSettingsChanged
from squall.errors import InvalidParameterValue, ResourceNotFound
from squall.functions.network import NETWORK_TAG, NetworkNames
from squall.store.functions import FunctionRepository

TAGS_MAX = 50
QUALIFIED = "Tags on function aliases and versions are not supported. Please specify a function ARN."


def validate_tags(tags: dict[str, str], networks: NetworkNames) -> None:
    if len(tags) > TAGS_MAX:
        raise InvalidParameterValue("Number of tags exceeds resource tag limit.")
    for key in tags:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(f"Tag keys starting with 'aws:' are reserved: {key}")
    networks.check_tag(tags)


class Tags:
    def __init__(self, repo: FunctionRepository, arns: Arns, bus: EventBus, networks: NetworkNames) -> None:
        self.repo = repo
        self.arns = arns
        self.bus = bus
        self.networks = networks
        self._network: dict[str, str] = {}  # the squall:network tag of the functions that have one
        bus.subscribe(FunctionDeleted, lambda event: self._network.pop(event.name, None))
        bus.subscribe(SandboxSettingsChanged, self._remote_change)

    def load(self, tags: dict[str, dict[str, str]]) -> None:
        self._network = {name: t[NETWORK_TAG] for name, t in tags.items() if NETWORK_TAG in t}

    async def reload(self, name: str) -> None:
        """Re-read one function's network tag (another front end may have changed it)."""
        tags = await asyncio.to_thread(self.repo.tags, name)
        if tags and NETWORK_TAG in tags:
            self._network[name] = tags[NETWORK_TAG]
        else:
            self._network.pop(name, None)

    def _remote_change(self, event: SandboxSettingsChanged) -> None:
        if not self.bus.from_remote:
            return

        async def refresh() -> None:
            before = self._network.get(event.name)
            await self.reload(event.name)
            if self._network.get(event.name) != before:  # caches that rebuilt meanwhile: once more
                with self.bus.remote():
                    self.bus.publish(SandboxSettingsChanged(event.name))

        self.bus.defer(refresh, f"the tags of function {event.name}")

    def validate(self, tags: dict[str, str]) -> None:
        validate_tags(tags, self.networks)

    def remember(self, name: str, tags: dict[str, str]) -> None:
        """A new function's tags (stored with it)."""
        if NETWORK_TAG in tags:
            self._network[name] = tags[NETWORK_TAG]

    def network_tag(self, name: str) -> str | None:
        return self._network.get(name)

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
        def checked(current: dict[str, str]) -> dict[str, str]:
            tags = edit(current)
            self.validate(tags)
            return tags

        tags = await asyncio.to_thread(self.repo.change_tags, ref.name, checked)
        if tags is None:
            raise self._missing(ref)
        network = tags.get(NETWORK_TAG)
        if network != self._network.get(ref.name):
            if network is None:
                self._network.pop(ref.name, None)
            else:
                self._network[ref.name] = network
            self.bus.publish(SandboxSettingsChanged(ref.name))  # environments are rebuilt with it

    def _unqualified(self, ref: FunctionRef) -> None:
        if ref.qualifier is not None:
            raise InvalidParameterValue(QUALIFIED)

    def _missing(self, ref: FunctionRef) -> ResourceNotFound:
        return ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")

