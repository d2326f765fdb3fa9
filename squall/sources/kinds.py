"""The kinds of event source Squall polls, and how a mapping's ``EventSourceArn`` names each.

AWS-API sources are named by their own ARNs and reached at ``aws_endpoint``. Self-hosted
brokers are named by ARNs of Squall's own form (botocore's ``EventSourceArn`` pattern admits
any service name), whose ``<broker>`` is a name from the ``event_source_brokers`` setting:

    arn:aws:redis:<region>:<account>:<broker>/stream/<key>
    arn:aws:nats:<region>:<account>:<broker>/stream/<stream>
    arn:aws:postgres:<region>:<account>:<broker>/table/<schema>.<table>
    arn:aws:mq:<region>:<account>:broker:<broker>:<anything>     (RabbitMQ; Queues names the queue)

Each kind's poller lives in its own module, which exposes ``make_poller(mapping, deps)`` and
``check(source, deps)`` (run when a mapping is created). The modules are imported when a
mapping of their kind is first used, so a client library a kind needs is only needed then.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

SQS, KINESIS, DYNAMODB = "sqs", "kinesis", "dynamodb"
REDIS, NATS, POSTGRES, RABBITMQ = "redis", "nats", "postgres", "rabbitmq"


@dataclass(frozen=True)
class Kind:
    name: str
    service: str  # the ARN's service
    label: str  # for messages
    resource: re.Pattern[str]  # the ARN's resource part; groups: name, and broker where there is one
    module: str  # squall.sources.<module>: make_poller, check
    stream: bool  # ordered, with StartingPosition, retries, record age, bisect, on-failure records
    default_batch: int = 100
    takes_queues: bool = False  # Queues and SourceAccessConfigurations (Amazon MQ's fields)
    at_timestamp: bool = False  # StartingPosition AT_TIMESTAMP
    item_failures: bool = True  # FunctionResponseTypes ReportBatchItemFailures
    default_window: int = 0
    needs_region: bool = True
    example: str = ""

    def entry(self, name: str) -> Any:
        return getattr(importlib.import_module(f"squall.sources.{self.module}"), name)


_BROKER_STREAM = r"(?P<broker>[A-Za-z0-9_-]{1,64})/stream/(?P<name>[^/\s]{1,256})"

KINDS: MappingProxyType[str, Kind] = MappingProxyType({
    k.name: k
    for k in (
        Kind(SQS, "sqs", "Amazon SQS", re.compile(r"(?P<name>[A-Za-z0-9_-]{1,80}(\.fifo)?)"), "sqs", stream=False,
             default_batch=10, example="arn:aws:sqs:<region>:<account>:<queue>"),
        Kind(KINESIS, "kinesis", "Kinesis", re.compile(r"stream/(?P<name>[A-Za-z0-9_.-]{1,128})"), "kinesis",
             stream=True, at_timestamp=True, example="arn:aws:kinesis:<region>:<account>:stream/<name>"),
        Kind(DYNAMODB, "dynamodb", "DynamoDB Streams",
             re.compile(r"table/(?P<name>[A-Za-z0-9_.-]{3,255})/stream/(?P<label>.+)"), "kinesis", stream=True,
             example="arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>"),
        Kind(REDIS, "redis", "Redis Streams", re.compile(_BROKER_STREAM), "redis_streams", stream=True,
             at_timestamp=True, needs_region=False, example="arn:aws:redis:<region>:<account>:<broker>/stream/<key>"),
        Kind(NATS, "nats", "NATS JetStream", re.compile(_BROKER_STREAM), "nats_jetstream", stream=True,
             at_timestamp=True, needs_region=False, example="arn:aws:nats:<region>:<account>:<broker>/stream/<stream>"),
        Kind(POSTGRES, "postgres", "PostgreSQL table changes",
             re.compile(r"(?P<broker>[A-Za-z0-9_-]{1,64})/table/(?P<name>[A-Za-z0-9_$]{1,63}\.[A-Za-z0-9_$]{1,63})"),
             "postgres_changes", stream=True, needs_region=False,
             example="arn:aws:postgres:<region>:<account>:<broker>/table/<schema>.<table>"),
        Kind(RABBITMQ, "mq", "RabbitMQ", re.compile(r"broker:(?P<broker>[A-Za-z0-9_-]{1,64})(:(?P<name>[A-Za-z0-9_.-]*))?"),
             "rabbitmq", stream=False, takes_queues=True, item_failures=False, default_window=0, needs_region=False,
             example="arn:aws:mq:<region>:<account>:broker:<broker>:<id> with Queues=[<queue>]"),
    )
})

BY_SERVICE: MappingProxyType[str, Kind] = MappingProxyType({k.service: k for k in KINDS.values()})
