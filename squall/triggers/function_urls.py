"""Function URL configs: the five operations, Lambda's checks, and the in-memory map from a
URL id to its function that every request through a URL reads.

A URL belongs to a function (``$LATEST``) or to one of its aliases. Its address is
``http://<url-id>.lambda-url.<region>.localhost:<port>/``: browsers and curl resolve every
``*.localhost`` name to this machine, so no DNS set-up is needed. The same URL answers at
``http://127.0.0.1:<port>/lambda-url/<url-id>/…`` for clients that cannot send that ``Host``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.engine.bus import CachesReset, EventBus, FunctionDeleted, StateChanged
from squall.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from squall.paging import decode_marker, encode_marker
from squall.store.function_urls import FunctionUrlRecord, FunctionUrlRepository

STATE_KIND = "function_urls"  # the bus's StateChanged kind of this cache (name: the function)
URL_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
METHODS = frozenset({"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*"})
PATH_PREFIX = "/lambda-url/"  # the fallback that needs no Host: /lambda-url/<url-id>/<path>
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+|\*")

Exists = Callable[[FunctionRef], Awaitable[bool]]


@dataclass(frozen=True)
class FunctionUrl:
    record: FunctionUrlRecord

    @property
    def ref(self) -> FunctionRef:
        return FunctionRef(self.record.function_name, self.record.qualifier)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def url_host(url_id: str, region: str) -> str:
    return f"{url_id}.lambda-url.{region}.localhost"


def check_cors(cors: dict[str, Any] | None) -> dict[str, Any] | None:
    """Lambda's checks of a Cors setting; an empty one is no CORS at all."""
    if not cors:
        return None
    for origin in cors.get("AllowOrigins") or []:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise InvalidParameterValue(
                f"Invalid origin in Cors.AllowOrigins: {origin!r}. An origin is scheme://host[:port] (e.g. "
                "https://www.example.com), or *.")
    for method in cors.get("AllowMethods") or []:
        if method.upper() not in METHODS:
            raise InvalidParameterValue(f"Invalid method in Cors.AllowMethods: {method!r}.")
    for key in ("AllowHeaders", "ExposeHeaders"):
        for header in cors.get(key) or []:
            if not _HEADER_NAME.fullmatch(header):
                raise InvalidParameterValue(f"Invalid header name in Cors.{key}: {header!r}.")
    return {k: v for k, v in cors.items() if v is not None}


class FunctionUrls:
    def __init__(self, repo: FunctionUrlRepository, arns: Arns, bus: EventBus, alias_exists: Exists,
                 function_exists: Exists, port: Callable[[], int | None]) -> None:
        self.repo = repo
        self.arns = arns
        self.alias_exists = alias_exists
        self.function_exists = function_exists
        self.port = port
        self.bus = bus
        self._by_id: dict[str, FunctionUrl] = {}
        self._by_target: dict[tuple[str, str | None], FunctionUrl] = {}
        self._writes = 0  # this front end's changes so far: a re-read that overlapped one reads again
        bus.subscribe(FunctionDeleted, lambda event: self._forget_function(event.name))
        bus.subscribe(StateChanged, self._state_changed)
        bus.subscribe(CachesReset, self._caches_reset)

    async def load(self) -> None:
        for record in await asyncio.to_thread(self.repo.all):
            self._keep(FunctionUrl(record))

    # ---- other front ends' changes (squall/cluster/relay.py) ------------------------------------
    def _state_changed(self, event: StateChanged) -> None:
        if event.kind != STATE_KIND or not self.bus.from_remote:  # our own changes are in memory already
            return
        name = event.name
        if name:
            self.bus.defer(lambda: self._reread(name), f"the function URLs of {name}")
        else:
            self.bus.defer(lambda: self._reread(None), "the function URLs")

    def _caches_reset(self, _event: CachesReset) -> None:
        if self.bus.from_remote:
            self.bus.defer(lambda: self._reread(None), "the function URLs")

    async def _reread(self, name: str | None) -> None:
        """Replace what memory holds of one function's URLs (``name``), or of all, with the database's."""
        for _ in range(5):  # a change of ours committed during the read may be missing from it: read again
            writes = self._writes
            records = await asyncio.to_thread(self.repo.all)
            if writes == self._writes:
                break
        if name is None:
            by_id: dict[str, FunctionUrl] = {}
            by_target: dict[tuple[str, str | None], FunctionUrl] = {}
            for record in records:
                url = FunctionUrl(record)
                by_id[record.url_id] = url
                by_target[(record.function_name, record.qualifier)] = url
            self._by_id, self._by_target = by_id, by_target
            return
        for url in [u for (n, _), u in self._by_target.items() if n == name]:
            self._drop(url)
        for record in records:
            if record.function_name == name:
                self._keep(FunctionUrl(record))

    def _changed(self, name: str) -> None:
        """Tell the other front ends (after the commit): their caches of ``name``'s URLs are stale."""
        self._writes += 1
        self.bus.publish(StateChanged(STATE_KIND, name))

    def lookup(self, url_id: str) -> FunctionUrl | None:
        """The URL an id names (the request path's hot lookup: a dictionary read)."""
        return self._by_id.get(url_id)

    def address(self, url_id: str) -> str:
        port = self.port()
        return f"http://{url_host(url_id, self.arns.region)}{f':{port}' if port else ''}/"

    # ---- the API ---------------------------------------------------------------------------------
    async def create(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        ref = await self._target(ref)
        existing = self._by_target.get((ref.name, ref.qualifier))
        if existing is not None:
            raise ResourceConflict(
                f"Failed to create function url config for [functionArn = {self.arns.function(ref.name, ref.qualifier)}]."
                " Error message:  FunctionUrlConfig exists for this Lambda function")
        now = _now()
        record = FunctionUrlRecord(ref.name, ref.qualifier, self._new_id(), params["AuthType"],
                                   check_cors(params.get("Cors")), params.get("InvokeMode") or "BUFFERED", now, now)
        if not await asyncio.to_thread(self.repo.insert, record):
            raise ResourceConflict(
                f"Failed to create function url config for [functionArn = {self.arns.function(ref.name, ref.qualifier)}]."
                " Error message:  FunctionUrlConfig exists for this Lambda function")
        url = self._keep(FunctionUrl(record))
        self._changed(ref.name)
        out = self._api(url)
        out.pop("LastModifiedTime")
        return out

    async def get(self, ref: FunctionRef) -> dict[str, Any]:
        return self._api(await self._existing(ref))

    async def update(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        url = await self._existing(ref)
        record = url.record
        changes: dict[str, Any] = {"last_modified": _now()}
        if params.get("AuthType") is not None:
            changes["auth_type"] = params["AuthType"]
        if "Cors" in params and params["Cors"] is not None:
            changes["cors"] = check_cors(params["Cors"])
        if params.get("InvokeMode") is not None:
            changes["invoke_mode"] = params["InvokeMode"]
        updated = replace(record, **changes)
        if not await asyncio.to_thread(self.repo.update, updated):
            raise ResourceNotFound("The resource you requested does not exist.")
        url = self._keep(FunctionUrl(updated))
        self._changed(record.function_name)
        return self._api(url)

    async def delete(self, ref: FunctionRef) -> None:
        url = await self._existing(ref)
        await asyncio.to_thread(self.repo.delete, url.record.function_name, url.record.qualifier)
        self._drop(url)
        self._changed(url.record.function_name)

    async def list(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[dict[str, Any]], str | None]:
        if not await self.function_exists(FunctionRef(ref.name, None)):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        urls = sorted((u for (name, _), u in self._by_target.items() if name == ref.name),
                      key=lambda u: u.record.qualifier or "")
        if marker:
            after = decode_marker(marker)
            urls = [u for u in urls if (u.record.qualifier or "") > after]
        limit = max_items or 50
        page = urls[:limit]
        following = encode_marker(page[-1].record.qualifier or "") if len(urls) > limit else None
        return [self._api(u) for u in page], following

    async def drop_alias(self, name: str, alias: str) -> None:
        """An alias was deleted: its URL goes with it (the row, whether or not this front end knew of it)."""
        deleted = await asyncio.to_thread(self.repo.delete, name, alias)
        url = self._by_target.get((name, alias))
        if url is not None:
            self._drop(url)
        if deleted or url is not None:
            self._changed(name)

    # ---- helpers -----------------------------------------------------------------------------------
    async def _target(self, ref: FunctionRef) -> FunctionRef:
        if ref.qualifier == LATEST:
            ref = FunctionRef(ref.name, None)
        if ref.qualifier is not None and is_version(ref.qualifier):
            raise InvalidParameterValue("A function URL can point to an alias or to $LATEST, not to a version.")
        if not await self.function_exists(FunctionRef(ref.name, None)):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        if ref.qualifier is not None and not await self.alias_exists(ref):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
        return ref

    async def _existing(self, ref: FunctionRef) -> FunctionUrl:
        ref = await self._target(ref)
        url = self._by_target.get((ref.name, ref.qualifier))
        if url is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return url

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))
            if candidate not in self._by_id:
                return candidate

    def _keep(self, url: FunctionUrl) -> FunctionUrl:
        self._by_id[url.record.url_id] = url
        self._by_target[(url.record.function_name, url.record.qualifier)] = url
        return url

    def _drop(self, url: FunctionUrl) -> None:
        self._by_id.pop(url.record.url_id, None)
        self._by_target.pop((url.record.function_name, url.record.qualifier), None)

    def _forget_function(self, name: str) -> None:
        self._writes += 1
        for url in [u for (n, _), u in self._by_target.items() if n == name]:
            self._drop(url)  # the rows went with the function (foreign key)

    def _api(self, url: FunctionUrl) -> dict[str, Any]:
        r = url.record
        out: dict[str, Any] = {
            "FunctionUrl": self.address(r.url_id),
            "FunctionArn": self.arns.function(r.function_name, r.qualifier),
            "AuthType": r.auth_type,
            "CreationTime": r.created,
            "LastModifiedTime": r.last_modified,
            "InvokeMode": r.invoke_mode,
        }
        if r.cors:
            out["Cors"] = r.cors
        return out
