"""The platform's own lines in an environment's log stream, in the function's ``LogFormat``.

``Text`` (Lambda's default): ``INIT_START …``, ``START RequestId: …``, ``END RequestId: …``,
``REPORT RequestId: …`` as Lambda writes them. ``JSON``: one JSON object per record, as Lambda
writes them in that format — ``{"time", "type": "platform.initStart" | "platform.start" |
"platform.report" | "platform.initReport", "record": {…}}`` (END has no JSON record: the report
closes the invocation) — filtered by ``SystemLogLevel``: the records are INFO, a timeout's or a
crash's line WARN (written as a JSON log record: ``timestamp``, ``level``, ``requestId``,
``message``), so ``WARN`` keeps only those and ``DEBUG``/``INFO`` keep everything. Squall's own
``ASYNC_EVENT`` line is ``{"type": "squall.asyncEvent"}`` in JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from squall.invoke.invocation import billed_ms, report_line

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class PlatformLog:
    def __init__(self, logging_config: dict[str, str] | Any) -> None:
        config = dict(logging_config or {})
        self.json = config.get("LogFormat", "Text") == "JSON"
        self.minimum = LEVELS.get(str(config.get("SystemLogLevel") or "INFO").upper(), 20) if self.json else 0

    def _record(self, kind: str, record: dict[str, Any], level: str = "INFO") -> str | None:
        if LEVELS[level] < self.minimum:
            return None
        return orjson.dumps({"time": _now(), "type": kind, "record": record}).decode()

    def init_start(self, family: str, version: str, arn: str, initialization: str) -> str | None:
        if not self.json:
            return f"INIT_START Runtime Version: {family}:{version}\tRuntime Version ARN: {arn}"
        return self._record("platform.initStart", {"initializationType": initialization, "phase": "init",
                                                   "runtimeVersion": f"{family}:{version}", "runtimeVersionArn": arn})

    def restore_start(self, family: str, version: str, arn: str) -> str | None:
        """A SnapStart environment's start: restored from its version's snapshot, not initialised."""
        if not self.json:
            return f"RESTORE_START Runtime Version: {family}:{version}\tRuntime Version ARN: {arn}"
        return self._record("platform.restoreStart", {"runtimeVersion": f"{family}:{version}", "runtimeVersionArn": arn})

    def init_report(self, init_ms: float, error_type: str, phase: str = "init") -> str | None:
        """A failed init (``phase`` "restore": a failed after-restore hook)."""
        if not self.json:
            what = "Restore" if phase == "restore" else "Init"
            return (f"{phase.upper()}_REPORT {what} Duration: {init_ms:.2f} ms\tPhase: {phase}\tStatus: error\t"
                    f"Error Type: {error_type}")
        kind = "platform.restoreReport" if phase == "restore" else "platform.initReport"
        return self._record(kind, {"initializationType": "snap-start" if phase == "restore" else "on-demand",
                                   "phase": phase, "status": "error", "errorType": error_type,
                                   "metrics": {"durationMs": round(init_ms, 2)}})

    def async_event(self, text: str, request_id: str) -> str | None:
        if not self.json:
            return text
        fields = dict(part.split(": ", 1) for part in text.split("\t") if ": " in part)
        return self._record("squall.asyncEvent", {"requestId": request_id, "attempt": fields.get("Attempt"),
                                                  "eventAge": fields.get("Event Age")})

    def start(self, request_id: str, version: str) -> str | None:
        if not self.json:
            return f"START RequestId: {request_id} Version: {version}"
        return self._record("platform.start", {"requestId": request_id, "version": version})

    def end(self, request_id: str) -> str | None:
        return None if self.json else f"END RequestId: {request_id}"

    def report(self, request_id: str, duration_ms: float, memory_mb: int, max_memory_mb: int, init_ms: float | None,
               status: str | None, error_type: str | None, restore_ms: float | None = None) -> str | None:
        if not self.json:
            return report_line(request_id, duration_ms, memory_mb, max_memory_mb, init_ms, status=status,
                               error_type=error_type, restore_ms=restore_ms)
        metrics: dict[str, Any] = {"durationMs": round(duration_ms, 2),
                                   "billedDurationMs": billed_ms(duration_ms, init_ms),
                                   "memorySizeMB": memory_mb, "maxMemoryUsedMB": max_memory_mb}
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 2)
        if restore_ms is not None:
            metrics["restoreDurationMs"] = round(restore_ms, 2)
        record: dict[str, Any] = {"requestId": request_id, "metrics": metrics, "status": status or "success"}
        if error_type:
            record["errorType"] = error_type
        return self._record("platform.report", record)

    def failure(self, text: str, request_id: str) -> str | None:
        """A timeout's or a crash's line (WARN)."""
        if not self.json:
            return text
        if LEVELS["WARN"] < self.minimum:
            return None
        return orjson.dumps({"timestamp": _now(), "level": "WARN", "requestId": request_id,
                             "message": text}).decode()  # the shape of Lambda's JSON application records
