"""Kinesis Data Streams and DynamoDB Streams read through boto3, as ``StreamClient``s."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from squall.errors import InvalidParameterValue
from squall.sources.aws import describe
from squall.sources.filters import kinesis_view
from squall.sources.kinds import KINESIS
from squall.sources.mapping import EventSourceMapping, Source
from squall.sources.poller import PollerDeps
from squall.sources.streams import (
    IteratorExpired,
    StreamClient,
    StreamPoller,
    StreamRecord,
)


def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> StreamPoller:
    source = mapping.source
    stream: StreamClient
    if source.kind == KINESIS:
        stream = KinesisStream(deps.clients.client("kinesis", source.region), source, deps.role_arn())
    else:
        stream = DynamoDbStream(deps.clients.client("dynamodbstreams", source.region), source)
    return StreamPoller(mapping, deps, stream)


async def check(source: Source, deps: PollerDeps, function_timeout: int | None) -> None:
    """The stream must exist at the endpoint."""
    try:
        if source.kind == KINESIS:
            client = deps.clients.client("kinesis", source.region)
            await deps.clients.call(client.describe_stream_summary, StreamName=source.name)
        else:
            client = deps.clients.client("dynamodbstreams", source.region)
            await deps.clients.call(client.describe_stream, StreamArn=source.arn, Limit=1)
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: {describe(error)}. Check that it exists at the "
            f"configured endpoint ({deps.clients.endpoint or 'AWS'}).") from None


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0.0)


def _get_records(client: Any, iterator: Any, limit: int) -> dict[str, Any]:
    """GetRecords of Kinesis or DynamoDB Streams (the same call and error in both APIs)."""
    try:
        return client.get_records(ShardIterator=iterator, Limit=limit)
    except client.exceptions.ExpiredIteratorException as error:
        raise IteratorExpired() from error


class KinesisStream(StreamClient):
    batch_info_key = "KinesisBatchInfo"
    max_read = 10000
    supports_timestamp = True

    def __init__(self, client: Any, source: Source, role_arn: str) -> None:
        self.client = client
        self.source = source
        self.role_arn = role_arn

    def shards(self) -> list[str]:
        out: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self.source.name}
        while True:
            page = self.client.list_shards(**kwargs)
            out.extend(s["ShardId"] for s in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return out
            kwargs = {"NextToken": token}

    def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> str | None:
        kwargs: dict[str, Any] = {"StreamName": self.source.name, "ShardId": shard}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif start == "AT_TIMESTAMP" and timestamp is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(timestamp))
        else:
            kwargs.update(ShardIteratorType=start)
        return self.client.get_shard_iterator(**kwargs).get("ShardIterator")

    def read(self, shard: str, iterator: Any, limit: int) -> tuple[list[StreamRecord], Any, float | None]:
        page = _get_records(self.client, iterator, limit)
        records = []
        for r in page.get("Records", []):
            data = r["Data"] if isinstance(r["Data"], bytes) else bytes(r["Data"])
            arrival = _epoch(r.get("ApproximateArrivalTimestamp"))
            event = {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": round(arrival, 3),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": self.role_arn,
                "awsRegion": self.source.region,
                "eventSourceARN": self.source.arn,
            }
            records.append(StreamRecord(r["SequenceNumber"], r["PartitionKey"], arrival, event, kinesis_view(event),
                                        len(data) * 4 // 3 + 400))
        return records, page.get("NextShardIterator"), page.get("MillisBehindLatest")


class DynamoDbStream(StreamClient):
    batch_info_key = "DDBStreamBatchInfo"
    max_read = 1000

    def __init__(self, client: Any, source: Source) -> None:
        self.client = client
        self.source = source

    def shards(self) -> list[str]:
        out: list[str] = []
        kwargs: dict[str, Any] = {"StreamArn": self.source.arn}
        while True:
            description = self.client.describe_stream(**kwargs)["StreamDescription"]
            out.extend(s["ShardId"] for s in description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return out
            kwargs = {"StreamArn": self.source.arn, "ExclusiveStartShardId": last}

    def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> str | None:
        kwargs: dict[str, Any] = {"StreamArn": self.source.arn, "ShardId": shard}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
        else:
            kwargs.update(ShardIteratorType=start)
        return self.client.get_shard_iterator(**kwargs).get("ShardIterator")

    def read(self, shard: str, iterator: Any, limit: int) -> tuple[list[StreamRecord], Any, float | None]:
        page = _get_records(self.client, iterator, limit)
        records = []
        for r in page.get("Records", []):
            change = dict(r["dynamodb"])
            arrival = _epoch(change.get("ApproximateCreationDateTime"))
            change["ApproximateCreationDateTime"] = int(arrival)
            event = {
                "eventID": r["eventID"],
                "eventName": r["eventName"],
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": self.source.region,
                "dynamodb": change,
                "eventSourceARN": self.source.arn,
            }
            if r.get("userIdentity"):
                event["userIdentity"] = r["userIdentity"]
            key = orjson.dumps(change.get("Keys", {}), option=orjson.OPT_SORT_KEYS).decode()
            records.append(StreamRecord(change["SequenceNumber"], key, arrival, event, event,
                                        int(change.get("SizeBytes", 256)) + 300))
        return records, page.get("NextShardIterator"), None
