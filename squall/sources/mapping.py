"""Event source mappings: what one is, Lambda's rules for its settings, and its API shape.

A mapping joins an event source (a queue or a stream, named by ARN) to a function, version
or alias. The settings a source kind takes, their defaults and their limits are Lambda's; a
setting a kind does not take is refused with Lambda's ``InvalidParameterValueException``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from squall.errors import InvalidParameterValue
from squall.sources.filters import FilterError, Filters

SQS = "sqs"
KINESIS = "kinesis"
DYNAMODB = "dynamodb"
STREAMS = frozenset({KINESIS, DYNAMODB})

# Lambda's states; the transitional ones last as long as starting or stopping a poller.
CREATING, ENABLING, ENABLED = "Creating", "Enabling", "Enabled"
DISABLING, DISABLED, UPDATING, DELETING = "Disabling", "Disabled", "Updating", "Deleting"
TRANSITIONAL = frozenset({CREATING, ENABLING, DISABLING, UPDATING, DELETING})
USER_INITIATED = "USER_INITIATED"
NO_RECORDS = "No records processed"

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"

_SOURCE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>\d{12}):(?P<resource>.+)")
_QUEUE = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?")
_STREAM = re.compile(r"stream/(?P<name>[A-Za-z0-9_.-]{1,128})")
_TABLE_STREAM = re.compile(r"table/(?P<name>[A-Za-z0-9_.-]{3,255})/stream/(?P<label>.+)")


@dataclass(frozen=True)
class Source:
    """An event source, parsed from its ARN."""

    kind: str  # SQS, KINESIS or DYNAMODB
    arn: str
    region: str
    account: str
    name: str  # the queue, stream or table

    @property
    def fifo(self) -> bool:
        return self.kind == SQS and self.name.endswith(".fifo")

    @property
    def stream(self) -> bool:
        return self.kind in STREAMS

    @classmethod
    def parse(cls, arn: str) -> Source:
        match = _SOURCE_ARN.fullmatch(arn)
        if match:
            service, resource = match.group("service"), match.group("resource")
            region, account = match.group("region"), match.group("account")
            if service == "sqs" and region and _QUEUE.fullmatch(resource):
                return cls(SQS, arn, region, account, resource)
            if service == "kinesis" and region and (stream := _STREAM.fullmatch(resource)):
                return cls(KINESIS, arn, region, account, stream.group("name"))
            if service == "dynamodb" and region and (table := _TABLE_STREAM.fullmatch(resource)):
                return cls(DYNAMODB, arn, region, account, table.group("name"))
        raise InvalidParameterValue(
            f"Unrecognized event source: {arn}. Squall polls Amazon SQS queues (arn:aws:sqs:<region>:<account>:<queue>), "
            "Kinesis streams (arn:aws:kinesis:<region>:<account>:stream/<name>) and DynamoDB streams "
            "(arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>), at the endpoint configured as aws_endpoint."
        )


@dataclass(frozen=True)
class Settings:
    """A mapping's settings with Lambda's defaults filled in (API names in ``to_api``)."""

    batch_size: int
    window_seconds: int = 0
    filter_criteria: dict[str, Any] | None = None
    report_item_failures: bool = False
    starting_position: str | None = None
    starting_timestamp: float | None = None
    max_retries: int = -1  # streams: -1 retries until the records expire
    max_record_age: int = -1  # streams: -1 keeps them until the stream drops them
    bisect: bool = False
    parallelization: int = 1
    tumbling_window: int = 0
    on_failure: str | None = None
    max_concurrency: int | None = None  # SQS's ScalingConfig
    enabled: bool = True
    created_at: float | None = None  # LATEST on Kinesis reads from here until a first checkpoint
    filters: Filters = field(default_factory=lambda: Filters.parse(None), compare=False)


@dataclass(frozen=True)
class EventSourceMapping:
    uuid: str
    function_name: str
    qualifier: str | None
    source: Source
    settings: Settings
    state: str
    state_reason: str
    last_modified: float
    last_result: str = NO_RECORDS

    def with_state(self, state: str, reason: str = USER_INITIATED) -> EventSourceMapping:
        return replace(self, state=state, state_reason=reason)

    def to_api(self, function_arn: str, arn: str) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "UUID": self.uuid,
            "BatchSize": s.batch_size,
            "MaximumBatchingWindowInSeconds": s.window_seconds,
            "EventSourceArn": self.source.arn,
            "FunctionArn": function_arn,
            "LastModified": self.last_modified,
            "State": self.state,
            "StateTransitionReason": self.state_reason,
            "FunctionResponseTypes": [REPORT_BATCH_ITEM_FAILURES] if s.report_item_failures else [],
            "EventSourceMappingArn": arn,
        }
        if s.filter_criteria:
            out["FilterCriteria"] = s.filter_criteria
        if self.source.stream:
            out.update(
                StartingPosition=s.starting_position,
                ParallelizationFactor=s.parallelization,
                MaximumRetryAttempts=s.max_retries,
                MaximumRecordAgeInSeconds=s.max_record_age,
                BisectBatchOnFunctionError=s.bisect,
                TumblingWindowInSeconds=s.tumbling_window,
                DestinationConfig={"OnFailure": {"Destination": s.on_failure}} if s.on_failure else {"OnFailure": {}},
                LastProcessingResult=self.last_result,
            )
            if s.starting_timestamp is not None:
                out["StartingPositionTimestamp"] = s.starting_timestamp
        elif s.max_concurrency is not None:
            out["ScalingConfig"] = {"MaximumConcurrency": s.max_concurrency}
        return out


# ---- Lambda's rules ------------------------------------------------------------------------
_STREAM_ONLY = {
    "ParallelizationFactor": "ParallelizationFactor",
    "MaximumRetryAttempts": "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds": "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError": "BisectBatchOnFunctionError",
    "TumblingWindowInSeconds": "TumblingWindowInSeconds",
    "DestinationConfig": "DestinationConfig",
    "StartingPosition": "StartingPosition",
    "StartingPositionTimestamp": "StartingPositionTimestamp",
}
_NOT_SERVED = ("Topics", "Queues", "SourceAccessConfigurations", "SelfManagedEventSource",
               "AmazonManagedKafkaEventSourceConfig", "SelfManagedKafkaEventSourceConfig",
               "DocumentDBEventSourceConfig", "ProvisionedPollerConfig", "KMSKeyArn")


def _timestamp(value: Any) -> float:
    if hasattr(value, "timestamp"):  # the protocol layer gives datetimes for timestamp members
        return float(value.timestamp())
    return float(value)


def settings_for(source: Source, params: dict[str, Any], current: Settings | None = None) -> Settings:
    """Validate a Create (``current`` None) or Update request for ``source`` and return the
    resulting settings. Raises ``InvalidParameterValue`` with Lambda's kind of message."""
    for name in _NOT_SERVED:
        if params.get(name):
            raise InvalidParameterValue(f"{name} is not supported for {_label(source)} event sources.")
    if source.kind == SQS:
        for name in _STREAM_ONLY:
            if params.get(name) is not None and not (name == "DestinationConfig" and not params[name].get("OnFailure")):
                raise InvalidParameterValue(f"Unsupported {name} parameter for the Amazon SQS event source.")
    elif params.get("ScalingConfig"):
        raise InvalidParameterValue(f"ScalingConfig is not supported for {_label(source)} event sources.")

    base = current or Settings(batch_size=10 if source.kind == SQS else 100)
    changes: dict[str, Any] = {}
    if params.get("BatchSize") is not None:
        changes["batch_size"] = params["BatchSize"]
    if params.get("MaximumBatchingWindowInSeconds") is not None:
        changes["window_seconds"] = params["MaximumBatchingWindowInSeconds"]
    if "FilterCriteria" in params and params["FilterCriteria"] is not None:
        criteria = params["FilterCriteria"]
        try:
            filters = Filters.parse(criteria)
        except FilterError as error:
            raise InvalidParameterValue(f"Invalid filter pattern definition. {error}") from None
        changes["filter_criteria"] = criteria if not filters.empty else None
        changes["filters"] = filters
    if params.get("FunctionResponseTypes") is not None:
        types = params["FunctionResponseTypes"]
        changes["report_item_failures"] = REPORT_BATCH_ITEM_FAILURES in types
    if params.get("Enabled") is not None:
        changes["enabled"] = bool(params["Enabled"])
    if source.stream:
        if current is None:
            position = params.get("StartingPosition")
            if position is None:
                raise InvalidParameterValue(
                    "1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: "
                    "Member must not be null.")
            if position == "AT_TIMESTAMP":
                if source.kind == DYNAMODB:
                    raise InvalidParameterValue("Unsupported starting position for DynamoDB streams: AT_TIMESTAMP.")
                if params.get("StartingPositionTimestamp") is None:
                    raise InvalidParameterValue("StartingPositionTimestamp must be set when StartingPosition is AT_TIMESTAMP.")
                changes["starting_timestamp"] = _timestamp(params["StartingPositionTimestamp"])
            elif params.get("StartingPositionTimestamp") is not None:
                raise InvalidParameterValue("StartingPositionTimestamp can be set only when StartingPosition is AT_TIMESTAMP.")
            changes["starting_position"] = position
        for api, name in (("MaximumRetryAttempts", "max_retries"), ("MaximumRecordAgeInSeconds", "max_record_age"),
                          ("BisectBatchOnFunctionError", "bisect"), ("ParallelizationFactor", "parallelization"),
                          ("TumblingWindowInSeconds", "tumbling_window")):
            if params.get(api) is not None:
                changes[name] = params[api]
        age = changes.get("max_record_age", base.max_record_age)
        if age != -1 and not 60 <= age <= 604800:
            raise InvalidParameterValue(
                f"MaximumRecordAgeInSeconds must be -1 (records are kept until they expire) or between 60 and "
                f"604800; got {age}.")
        destination = params.get("DestinationConfig")
        if destination is not None:
            target = (destination.get("OnFailure") or {}).get("Destination")
            if target and not re.match(r"arn:aws[a-zA-Z-]*:(sqs|sns):", target):
                raise InvalidParameterValue(
                    f"The destination {target} is not supported: on-failure records go to an SQS queue or an SNS topic.")
            changes["on_failure"] = target or None
    elif params.get("ScalingConfig") is not None:
        changes["max_concurrency"] = params["ScalingConfig"].get("MaximumConcurrency")

    settings = replace(base, **changes)
    if settings.filter_criteria is not None and settings.filters.empty:
        settings = replace(settings, filters=Filters.parse(settings.filter_criteria))
    if source.fifo and settings.batch_size > 10:
        raise InvalidParameterValue("Batch size must be between 1 and 10 for FIFO queues.")
    if source.kind == SQS and settings.batch_size > 10 and settings.window_seconds < 1:
        raise InvalidParameterValue(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
    return settings


def _label(source: Source) -> str:
    return {SQS: "Amazon SQS", KINESIS: "Kinesis", DYNAMODB: "DynamoDB Streams"}[source.kind]


def settings_to_json(s: Settings) -> dict[str, Any]:
    """What the store keeps (the filters are parsed again from their criteria)."""
    return {
        "batch_size": s.batch_size, "window_seconds": s.window_seconds, "filter_criteria": s.filter_criteria,
        "report_item_failures": s.report_item_failures, "starting_position": s.starting_position,
        "starting_timestamp": s.starting_timestamp, "max_retries": s.max_retries, "max_record_age": s.max_record_age,
        "bisect": s.bisect, "parallelization": s.parallelization, "tumbling_window": s.tumbling_window,
        "on_failure": s.on_failure, "max_concurrency": s.max_concurrency, "enabled": s.enabled,
        "created_at": s.created_at,
    }


def settings_from_json(data: dict[str, Any]) -> Settings:
    settings = Settings(**data)
    return replace(settings, filters=Filters.parse(settings.filter_criteria))
