"""A read-only subset of the CloudWatch Logs API (JSON 1.1 protocol) over function logs.

``aws logs filter-log-events --endpoint-url …`` and boto3's ``logs`` client work against
Squall's endpoint; ``squall logs`` uses the same calls. Operations: DescribeLogGroups,
DescribeLogStreams, GetLogEvents, FilterLogEvents.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse
from squall.auth.access import Access
from squall.errors import LambdaError
from squall.observe.logs import LogReader

_TARGET_PREFIX = "Logs_20140328."
_GROUP_NAME = re.compile(r"[\.\-_/#A-Za-z0-9]{1,512}")
# GetLogEvents pages through a whole stream itself.
_EVERYTHING = 1 << 62


class LogsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LogsApi:
    def __init__(self, logs: LogReader, region: str | None = None, account_id: str | None = None) -> None:
        self.logs = logs
        # For log-group ARNs; :class:`LogsRoute` fills them in from the server's settings when not given.
        self.region = region
        self.account_id = account_id

    def group_arn(self, group: str) -> str:
        """``arn:aws:logs:REGION:ACCOUNT:log-group:GROUP`` (DescribeLogGroups' ``logGroupArn``;
        its ``arn`` is this plus ``:*``)."""
        return f"arn:aws:logs:{self.region or ''}:{self.account_id or ''}:log-group:{group}"

    async def handle(self, target: str, body: bytes) -> HttpResponse:
        operation = target.removeprefix(_TARGET_PREFIX)
        handler = getattr(self, f"_op_{operation}", None)
        try:
            if handler is None or not target.startswith(_TARGET_PREFIX):
                raise LogsError("UnknownOperationException", f"Squall does not serve {target}")
            try:
                params = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError as exc:
                raise LogsError("SerializationException", f"Could not parse request body: {exc}") from exc
            if not isinstance(params, dict):
                raise LogsError("SerializationException", "The request body must be a JSON object")
            await self.logs.flush_async()
            try:
                result = await asyncio.to_thread(handler, params)
            except (ValueError, TypeError) as exc:  # a malformed limit, time or token
                raise LogsError("InvalidParameterException", f"Invalid parameter: {exc}") from exc
        except LogsError as exc:
            return HttpResponse(
                400,
                [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", exc.code)],
                orjson.dumps({"__type": exc.code, "message": exc.message}),
            )
        return HttpResponse(200, [("Content-Type", "application/x-amz-json-1.1")], orjson.dumps(result))

    def _group(self, params: dict[str, Any]) -> str:
        group = params.get("logGroupName") or params.get("logGroupIdentifier")
        if not group:
            raise LogsError("InvalidParameterException", "logGroupName is required")
        if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group) or group in (".", ".."):
            raise LogsError(
                "InvalidParameterException",
                f"1 validation error detected: Value '{group}' at 'logGroupName' failed to satisfy constraint: "
                r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+ and have length between 1 and 512",
            )
        if not self.logs.group_exists(group):
            raise LogsError("ResourceNotFoundException", "The specified log group does not exist.")
        return group

    def _op_DescribeLogGroups(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("logGroupNamePrefix", "")
        groups = [g for g in self.logs.groups() if g.startswith(prefix)]
        return {"logGroups": [{"logGroupName": g, "arn": f"{self.group_arn(g)}:*", "logGroupArn": self.group_arn(g)}
                              for g in groups]}

    def _op_DescribeLogStreams(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group(params)
        prefix = params.get("logStreamNamePrefix", "")
        streams = [
            {
                "logStreamName": name,
                "firstEventTimestamp": first,
                "lastEventTimestamp": last,
                "lastIngestionTime": last,
                "creationTime": first,
            }
            for name, first, last in self.logs.streams(group)
            if name.startswith(prefix)
        ]
        if params.get("orderBy") == "LastEventTime":
            streams.sort(key=lambda s: s["lastEventTimestamp"])
        if params.get("descending"):
            streams.reverse()
        limit = int(params.get("limit") or 50)
        return {"logStreams": streams[:limit]}

    def _op_FilterLogEvents(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group(params)
        streams = params.get("logStreamNames")
        prefix = params.get("logStreamNamePrefix")
        if streams and prefix:
            raise LogsError(
                "InvalidParameterException", "logStreamNames and logStreamNamePrefix are mutually exclusive"
            )
        if prefix:
            streams = [name for name, _, _ in self.logs.streams(group) if name.startswith(prefix)]
        events, token = self.logs.filter(
            group,
            streams=streams,
            start=params.get("startTime"),
            end=params.get("endTime"),
            pattern=(params.get("filterPattern") or "").strip('"') or None,
            limit=int(params.get("limit") or 10000),
            token=params.get("nextToken"),
        )
        result: dict[str, Any] = {
            "events": [
                {
                    "logStreamName": e.stream,
                    "timestamp": e.timestamp,
                    "message": e.message,
                    "ingestionTime": e.timestamp,
                    "eventId": e.event_id,
                }
                for e in events
            ],
            "searchedLogStreams": [],
        }
        if token:
            result["nextToken"] = token
        return result

    def _op_GetLogEvents(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group(params)
        stream = params.get("logStreamName")
        if not stream:
            raise LogsError("InvalidParameterException", "logStreamName is required")
        events, _ = self.logs.filter(
            group, streams=[stream], start=params.get("startTime"), end=params.get("endTime"), limit=_EVERYTHING
        )
        limit = int(params.get("limit") or 10000)
        # Tokens are positions in the (time-filtered) stream: f/N reads forward from N,
        # b/N reads backward from N. Without one, start at the head or the tail.
        token = params.get("nextToken") or ""
        if token[:2] in ("f/", "b/"):
            position = min(max(0, int(token[2:])), len(events))
            if token[0] == "f":
                begin, end = position, min(position + limit, len(events))
            else:
                begin, end = max(0, position - limit), position
        elif token:
            raise LogsError("InvalidParameterException", "The specified nextToken is invalid.")
        elif params.get("startFromHead"):
            begin, end = 0, min(limit, len(events))
        else:
            begin, end = max(0, len(events) - limit), len(events)
        chosen = events[begin:end]
        return {
            "events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp} for e in chosen],
            "nextForwardToken": f"f/{end}",
            "nextBackwardToken": f"b/{begin}",
        }


_AUTH_STATUS = {
    "AccessDeniedException": 400, "UnrecognizedClientException": 400, "InvalidSignatureException": 400,
    "IncompleteSignatureException": 400, "MissingAuthenticationTokenException": 400, "ExpiredTokenException": 400,
    "ServiceUnavailableException": 503, "ServiceException": 500,
}


class LogsRoute:
    """The router's route for the Logs subset: claimed by ``X-Amz-Target``, signed as
    ``logs``, each operation authorized as ``logs:<Operation>`` on its log group."""

    service = "logs"

    def __init__(self, api: LogsApi, access: Access, region: str, account_id: str) -> None:
        self.api = api
        self.access = access
        self.region = region
        self.account_id = account_id
        if api.region is None:
            api.region = region
        if api.account_id is None:
            api.account_id = account_id

    def claims(self, request: Request) -> bool:
        return request.headers.get("x-amz-target", "").startswith(_TARGET_PREFIX)

    async def handle(self, request: Request) -> HttpResponse:
        target = request.headers["x-amz-target"]
        operation = target.removeprefix(_TARGET_PREFIX)
        try:
            params = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            params = {}
        group = params.get("logGroupName") if isinstance(params, dict) else None
        resource = f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}:*" if isinstance(group, str) else "*"
        self.access.check(request.state.get("principal"), f"logs:{operation}", resource)  # type: ignore[arg-type]
        return await self.api.handle(target, request.body)

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        """Errors of the JSON 1.1 protocol: ``__type`` and ``message`` (AWS answers 400 to
        authentication failures on this protocol)."""
        status = _AUTH_STATUS.get(error.code, 400)
        return HttpResponse(
            status,
            [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", error.code)],
            orjson.dumps({"__type": error.code, "message": error.message}),
        )
