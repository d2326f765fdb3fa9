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
from squall.sources.kinds import BY_SERVICE, KINDS, SQS, Kind

# Lambda's states; the transitional ones last as long as starting or stopping a poller.
CREATING, ENABLING, ENABLED = "Creating", "Enabling", "Enabled"
DISABLING, DISABLED, UPDATING, DELETING = "Disabling", "Disabled", "Updating", "Deleting"
TRANSITIONAL = frozenset({CREATING, ENABLING, DISABLING, UPDATING, DELETING})
USER_INITIATED = "USER_INITIATED"
NO_RECORDS = "No records processed"

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"

_SOURCE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>\d{12}):(?P<resource>.+)")


@dataclass(frozen=True)
class Source:
    """An event source, parsed from its ARN."""

    kind: str  # a name from kinds.KINDS
    arn: str
    region: str
    account: str
    name: str  # the queue, stream, table or key
    broker: str | None = None  # self-hosted sources: a name from the event_source_brokers setting

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    @property
    def fifo(self) -> bool:
        return self.kind == SQS and self.name.endswith(".fifo")

    @property
    def stream(self) -> bool:
        return self.spec.stream

    @classmethod
    def parse(cls, arn: str) -> Source:
        match = _SOURCE_ARN.fullmatch(arn)
        kind = BY_SERVICE.get(match.group("service")) if match else None
        if match and kind is not None and (match.group("region") or not kind.needs_region):
            resource = kind.resource.fullmatch(match.group("resource"))
            if resource:
                groups = resource.groupdict()
                return cls(kind.name, arn, match.group("region"), match.group("account"), groups.get("name") or "",
                           groups.get("broker"))
        raise InvalidParameterValue(
            f"Unrecognized event source: {arn}. Squall polls: "
            + "; ".join(f"{k.label} ({k.example})" for k in KINDS.values())
            + ". See docs/event-sources.md."
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
    queues: tuple[str, ...] = ()  # RabbitMQ: the queue (Amazon MQ's Queues)
    secret: str | None = None  # the broker's credentials: a BASIC_AUTH secret's ARN
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
        if s.queues:
            out["Queues"] = list(s.queues)
        if s.secret:
            out["SourceAccessConfigurations"] = [{"Type": "BASIC_AUTH", "URI": s.secret}]
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
_NOT_SERVED = ("Topics", "SelfManagedEventSource", "AmazonManagedKafkaEventSourceConfig",
               "SelfManagedKafkaEventSourceConfig", "DocumentDBEventSourceConfig", "ProvisionedPollerConfig", "KMSKeyArn")
_QUEUE_FIELDS = ("Queues", "SourceAccessConfigurations")


def _timestamp(value: Any) -> float:
    if hasattr(value, "timestamp"):  # the protocol layer gives datetimes for timestamp members
        return float(value.timestamp())
    return float(value)


def settings_for(source: Source, params: dict[str, Any], current: Settings | None = None) -> Settings:
    """Validate a Create (``current`` None) or Update request for ``source`` and return the
    resulting settings. Raises ``InvalidParameterValue`` with Lambda's kind of message."""
    spec = source.spec
    for name in _NOT_SERVED + (() if spec.takes_queues else _QUEUE_FIELDS):
        if params.get(name):
            raise InvalidParameterValue(f"{name} is not supported for {spec.label} event sources.")
    if not spec.stream:
        for name in _STREAM_ONLY:
            if params.get(name) is not None and not (name == "DestinationConfig" and not params[name].get("OnFailure")):
                raise InvalidParameterValue(f"Unsupported {name} parameter for the {spec.label} event source.")
    if source.kind != SQS and params.get("ScalingConfig"):
        raise InvalidParameterValue(f"ScalingConfig is not supported for {spec.label} event sources.")
    if not spec.item_failures and params.get("FunctionResponseTypes"):
        raise InvalidParameterValue(f"FunctionResponseTypes is not supported for {spec.label} event sources.")

    base = current or Settings(batch_size=spec.default_batch, window_seconds=spec.default_window)
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
                if not spec.at_timestamp:
                    raise InvalidParameterValue(f"Unsupported starting position for {spec.label}: AT_TIMESTAMP.")
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
    if spec.takes_queues:
        if current is None:
            queues = params.get("Queues") or []
            if len(queues) != 1:
                raise InvalidParameterValue(f"Queues must name exactly one queue for {spec.label} event sources.")
            changes["queues"] = tuple(queues)
        if params.get("SourceAccessConfigurations") is not None:
            secrets = [c.get("URI") for c in params["SourceAccessConfigurations"] if c.get("Type") == "BASIC_AUTH"]
            others = [c.get("Type") for c in params["SourceAccessConfigurations"] if c.get("Type") != "BASIC_AUTH"]
            if others:
                raise InvalidParameterValue(f"Unsupported SourceAccessConfigurations type {others[0]} for {spec.label}: "
                                            "Squall takes BASIC_AUTH (a secret from event_source_secrets).")
            changes["secret"] = secrets[0] if secrets else None

    settings = replace(base, **changes)
    if settings.filter_criteria is not None and settings.filters.empty:
        settings = replace(settings, filters=Filters.parse(settings.filter_criteria))
    if source.fifo and settings.batch_size > 10:
        raise InvalidParameterValue("Batch size must be between 1 and 10 for FIFO queues.")
    if source.kind == SQS and settings.batch_size > 10 and settings.window_seconds < 1:
        raise InvalidParameterValue(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
    return settings


def settings_to_json(s: Settings) -> dict[str, Any]:
    """What the store keeps (the filters are parsed again from their criteria)."""
    return {
        "batch_size": s.batch_size, "window_seconds": s.window_seconds, "filter_criteria": s.filter_criteria,
        "report_item_failures": s.report_item_failures, "starting_position": s.starting_position,
        "starting_timestamp": s.starting_timestamp, "max_retries": s.max_retries, "max_record_age": s.max_record_age,
        "bisect": s.bisect, "parallelization": s.parallelization, "tumbling_window": s.tumbling_window,
        "on_failure": s.on_failure, "max_concurrency": s.max_concurrency, "enabled": s.enabled,
        "created_at": s.created_at, "queues": list(s.queues), "secret": s.secret,
    }


def settings_from_json(data: dict[str, Any]) -> Settings:
    settings = Settings(**{**data, "queues": tuple(data.get("queues", ()))})
    return replace(settings, filters=Filters.parse(settings.filter_criteria))
