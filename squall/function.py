"""Functions and their versions: the configuration record, its validation and its states.

A function has versions; ``$LATEST`` is the mutable one (published versions and aliases
build on the same record later). The record is a frozen dataclass; changes produce a new
record with a new RevisionId.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Mapping

from squall.arn import LATEST, Arns
from squall.errors import InvalidParameterValue, ResourceConflict
from squall.functions.network import vpc_api

MEMORY_MIN, MEMORY_MAX = 128, 10240
TIMEOUT_MIN, TIMEOUT_MAX = 1, 900
EPHEMERAL_MIN, EPHEMERAL_MAX = 512, 10240
ENV_MAX_BYTES = 4096

RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


class State(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    FAILED = "Failed"


class UpdateStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"


# Allowed transitions of State (Lambda's function lifecycle).
STATE_TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.ACTIVE, State.FAILED}),
    State.ACTIVE: frozenset({State.INACTIVE, State.FAILED}),
    State.INACTIVE: frozenset({State.PENDING}),
    State.FAILED: frozenset({State.PENDING}),
}
UPDATE_TRANSITIONS: dict[UpdateStatus, frozenset[UpdateStatus]] = {
    UpdateStatus.IN_PROGRESS: frozenset({UpdateStatus.SUCCESSFUL, UpdateStatus.FAILED}),
    UpdateStatus.SUCCESSFUL: frozenset({UpdateStatus.IN_PROGRESS}),
    UpdateStatus.FAILED: frozenset({UpdateStatus.IN_PROGRESS}),
}


# Lambda's name for this host's architecture: the one Architectures functions may name
HOST_ARCHITECTURE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower())


def lambda_timestamp(moment: datetime | None = None) -> str:
    """Lambda's LastModified format: ``2020-04-10T19:06:32.563+0000``."""
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class Code:
    sha256: str  # base64, Lambda's CodeSha256
    sha256_hex: str  # blob key
    size: int
    unzipped_size: int = 0  # declared by the zip (0: recorded before Squall kept it)


@dataclass(frozen=True)
class LayerUse:
    """One layer version a function version uses (``Layers``, in order)."""

    arn: str
    code_size: int
    sha256_hex: str  # the layer's code (blob key)
    unzipped_size: int

    def to_record(self) -> dict[str, Any]:
        return {"Arn": self.arn, "CodeSize": self.code_size, "Sha256Hex": self.sha256_hex,
                "UnzippedSize": self.unzipped_size}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "LayerUse":
        return cls(record["Arn"], int(record["CodeSize"]), record["Sha256Hex"], int(record.get("UnzippedSize", 0)))


@dataclass(frozen=True)
class FunctionVersion:
    """The configuration of one version of a function."""

    name: str
    runtime: str
    handler: str
    role: str
    code: Code
    version: str = LATEST
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    ephemeral_storage: int = 512
    architectures: tuple[str, ...] = (HOST_ARCHITECTURE,)
    tracing_mode: str = "PassThrough"
    dead_letter_target: str | None = None
    logging_config: Mapping[str, str] = field(default_factory=lambda: {"LogFormat": "Text"})
    environment_given: bool = False  # Environment is echoed back only when a request set it
    # VpcConfig as set ({"SubnetIds", "SecurityGroupIds"}; empty lists once left; None: never
    # set): it names the function's network (functions/network.py)
    vpc_config: Mapping[str, Any] | None = None
    layers: tuple[LayerUse, ...] = ()  # merged in this order at /opt
    snap_start: str = "None"  # SnapStart.ApplyOn as set (squall/environments/snapshots.py applies it)
    published_from: str | None = None  # a published version: the fingerprint of the $LATEST it copies
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: str = field(default_factory=lambda: lambda_timestamp())
    state: State = State.PENDING
    state_reason: str | None = "The function is being created."
    state_reason_code: str | None = "Creating"
    last_update_status: UpdateStatus | None = None
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None

    # ---- lifecycle ---------------------------------------------------------------
    def with_state(self, state: State, reason: str | None = None, code: str | None = None) -> "FunctionVersion":
        if state != self.state and state not in STATE_TRANSITIONS[self.state]:
            raise ValueError(f"illegal function state transition {self.state} -> {state}")
        return dataclasses.replace(self, state=state, state_reason=reason, state_reason_code=code)

    def with_update_status(
        self, status: UpdateStatus, reason: str | None = None, code: str | None = None
    ) -> "FunctionVersion":
        current = self.last_update_status
        if current is not None and status != current and status not in UPDATE_TRANSITIONS[current]:
            raise ValueError(f"illegal update status transition {current} -> {status}")
        return dataclasses.replace(
            self, last_update_status=status, last_update_status_reason=reason, last_update_status_reason_code=code
        )

    def changed(self, **changes: Any) -> "FunctionVersion":
        """A new revision of this version with some fields changed."""
        return dataclasses.replace(self, revision_id=str(uuid.uuid4()), last_modified=lambda_timestamp(), **changes)

    def ensure_updatable(self, arn: str) -> None:
        if self.last_update_status == UpdateStatus.IN_PROGRESS:
            raise ResourceConflict(
                "The operation cannot be performed at this time. "
                f"An update is in progress for resource: {arn}"
            )
        if self.state == State.PENDING:
            raise ResourceConflict(
                "The operation cannot be performed at this time. "
                "The function is currently in the following state: Pending"
            )

    # ---- wire format -------------------------------------------------------------
    @property
    def log_group(self) -> str:
        return self.logging_config.get("LogGroup") or f"/aws/lambda/{self.name}"

    def to_api(self, arns: Arns, arn_qualifier: str | None | bool = True, listing: bool = False) -> dict[str, Any]:
        """The FunctionConfiguration shape of the Lambda API.

        ``arn_qualifier``: what FunctionArn ends with — True: the version itself for a
        published version, nothing for ``$LATEST``; a string: that qualifier (an alias read,
        ``$LATEST`` asked by name); None: unqualified. ``listing``: the shape of ListFunctions
        and ListVersionsByFunction items (no states, no RuntimeVersionConfig)."""
        if arn_qualifier is True:
            arn_qualifier = None if self.version == LATEST else self.version
        config: dict[str, Any] = {
            "FunctionName": self.name,
            "FunctionArn": arns.function(self.name, arn_qualifier or None),
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code.size,
            "Description": self.description,
            "Timeout": self.timeout,
            "MemorySize": self.memory_size,
            "LastModified": self.last_modified,
            "CodeSha256": self.code.sha256,
            "Version": self.version,
            "TracingConfig": {"Mode": self.tracing_mode},
            "RevisionId": self.revision_id,
            "PackageType": "Zip",
            "Architectures": list(self.architectures),
            "EphemeralStorage": {"Size": self.ephemeral_storage},
            "LoggingConfig": self.logging_api(),
            "SnapStart": {"ApplyOn": self.snap_start, "OptimizationStatus": self.snap_start_status},
        }
        if self.environment or self.environment_given:
            config["Environment"] = {"Variables": dict(self.environment)}
        if self.dead_letter_target:
            config["DeadLetterConfig"] = {"TargetArn": self.dead_letter_target}
        if self.layers:
            config["Layers"] = [{"Arn": use.arn, "CodeSize": use.code_size} for use in self.layers]
        if self.vpc_config is not None:
            config["VpcConfig"] = vpc_api(self.vpc_config)
        if listing:
            return config
        config["RuntimeVersionConfig"] = {"RuntimeVersionArn": arns.runtime_version(self.runtime)}
        config["State"] = str(self.state)
        for key, value in (
            ("StateReason", self.state_reason),
            ("StateReasonCode", self.state_reason_code),
            ("LastUpdateStatus", self.last_update_status and str(self.last_update_status)),
            ("LastUpdateStatusReason", self.last_update_status_reason),
            ("LastUpdateStatusReasonCode", self.last_update_status_reason_code),
        ):
            if value is not None:
                config[key] = value
        return config

    @property
    def snap_start_status(self) -> str:
        """SnapStart.OptimizationStatus: On for a published version that asked for it (Python: forked
        from a snapshot after init; other runtimes: environments initialised ahead of need)."""
        applies = self.snap_start == "PublishedVersions" and self.version not in ("", "$LATEST")
        return "On" if applies else "Off"

    def logging_api(self) -> dict[str, str]:
        """LoggingConfig as Lambda shows it: levels (INFO by default) only in JSON format."""
        shown = {"LogFormat": self.logging_config.get("LogFormat", "Text"), "LogGroup": self.log_group}
        if shown["LogFormat"] == "JSON":
            shown["ApplicationLogLevel"] = self.logging_config.get("ApplicationLogLevel", "INFO")
            shown["SystemLogLevel"] = self.logging_config.get("SystemLogLevel", "INFO")
        return shown

    def fingerprint(self) -> str:
        """What publishing compares: the code and every setting a version copies."""
        settings = {
            "code": self.code.sha256_hex,
            "runtime": self.runtime,
            "handler": self.handler,
            "role": self.role,
            "description": self.description,
            "timeout": self.timeout,
            "memory": self.memory_size,
            "environment": dict(self.environment),
            "ephemeral": self.ephemeral_storage,
            "architectures": list(self.architectures),
            "tracing": self.tracing_mode,
            "dlq": self.dead_letter_target,
            "logging": dict(self.logging_config),
            "vpc": vpc_api(self.vpc_config) if self.vpc_config else None,
        }
        if self.layers:  # absent when there are none: fingerprints of older versions stay the same
            settings["layers"] = [use.arn for use in self.layers]
        if self.snap_start != "None":
            settings["snap_start"] = self.snap_start
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def to_record(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["environment"] = dict(self.environment)
        record["logging_config"] = dict(self.logging_config)
        record["architectures"] = list(self.architectures)
        record["vpc_config"] = None if self.vpc_config is None else {k: v for k, v in self.vpc_config.items()}
        record["layers"] = [use.to_record() for use in self.layers]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "FunctionVersion":
        data = dict(record)
        data["code"] = Code(**data["code"])
        data["layers"] = tuple(LayerUse.from_record(r) for r in data.get("layers") or ())
        data["architectures"] = tuple(data["architectures"])
        data["state"] = State(data["state"])
        if data.get("last_update_status"):
            data["last_update_status"] = UpdateStatus(data["last_update_status"])
        return cls(**data)


# ---- validation of API input (beyond the shape checks the protocol layer does) -----------
def validate_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The FunctionVersion fields CreateFunction/UpdateFunctionConfiguration set.

    Every constraint the service model states (the role's pattern, memory and timeout ranges,
    architectures, enums) has been checked by the protocol layer already, with AWS's
    ``ValidationException`` wording; what is left is Lambda's own checks.
    """
    fields: dict[str, Any] = {}
    for key, name in (("Role", "role"), ("Handler", "handler"), ("MemorySize", "memory_size"),
                      ("Timeout", "timeout"), ("Description", "description")):
        if key in params:
            fields[name] = params[key]
    if "Environment" in params:
        fields["environment"] = validate_environment(params["Environment"].get("Variables") or {})
        fields["environment_given"] = True
    if "EphemeralStorage" in params:
        fields["ephemeral_storage"] = params["EphemeralStorage"].get("Size", EPHEMERAL_MIN)
    if "Architectures" in params:
        fields["architectures"] = tuple(params["Architectures"])
    if "TracingConfig" in params and params["TracingConfig"].get("Mode"):
        fields["tracing_mode"] = params["TracingConfig"]["Mode"]
    if "SnapStart" in params:
        fields["snap_start"] = (params["SnapStart"] or {}).get("ApplyOn") or "None"  # (the model's enum: checked)
    if "Architectures" in params and list(params["Architectures"]) != [HOST_ARCHITECTURE]:
        raise InvalidParameterValue(
            f"This server runs {HOST_ARCHITECTURE} functions only (its host is {platform.machine()}): "
            f"Architectures {list(params['Architectures'])} needs a Squall server on such a host.")
    if params.get("KMSKeyArn"):
        raise InvalidParameterValue(
            "KMSKeyArn is not supported: Squall does not encrypt environment variables with a KMS key. "
            "Leave KMSKeyArn out (the variables are kept in the server's own store).")
    if params.get("CodeSigningConfigArn"):
        raise InvalidParameterValue("Code signing is not supported by this Squall server: leave CodeSigningConfigArn out.")
    if params.get("ImageConfig"):
        raise InvalidParameterValue("ImageConfig applies to container images, which Squall does not run (Zip only).")
    if "DeadLetterConfig" in params:
        fields["dead_letter_target"] = params["DeadLetterConfig"].get("TargetArn") or None
    if "LoggingConfig" in params:
        if params["LoggingConfig"].get("LogGroup") in (".", ".."):
            raise InvalidParameterValue(f"LogGroup '{params['LoggingConfig']['LogGroup']}' is not a valid log group name.")
        fields["logging_config"] = dict(params["LoggingConfig"])
    if "VpcConfig" in params:  # its network names are checked against the settings (NetworkNames.check_vpc)
        fields["vpc_config"] = dict(params["VpcConfig"] or {})
    if params.get("FileSystemConfigs"):
        raise InvalidParameterValue("FileSystemConfigs are not supported by this Squall server.")
    return fields


def merged_logging(current: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """LoggingConfig after an update: what was given replaces, the rest stays; the levels
    exist only in JSON format (switching to Text drops them)."""
    merged = {"LogFormat": "Text", **current, **given}
    if merged["LogFormat"] != "JSON":
        merged.pop("ApplicationLogLevel", None)
        merged.pop("SystemLogLevel", None)
    return merged


def validate_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """Lambda's checks of environment variables: reserved keys, and 4 KB measured as AWS
    does — the compact JSON of the map, in UTF-8, which the message quotes."""
    reserved = [key for key in variables if key in RESERVED_ENV]
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables "
            "you have provided contains reserved keys that are currently not supported for modification. "
            f"Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = json.dumps({k: str(v) for k, v in variables.items()}, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > ENV_MAX_BYTES:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables "
            f"you have provided exceeded the 4KB limit. String measured: {measured}"
        )
    return {k: str(v) for k, v in variables.items()}
