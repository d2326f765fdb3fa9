"""Event source mappings: records per second delivered to a trivial function, and produce →
handler-start latency when idle, for SQS (moto's server) and Redis Streams (the machine's Redis).

1. **Throughput** at BatchSize 1, 10 and 100: ``--records`` records are produced first, then a
   mapping is created and the time until every record is done (SQS: the queue is empty; Redis:
   the mapping's consumer group has read and acknowledged every entry) gives records/s.
   **Baseline, same run:** a plain consumer in this process that reads and acknowledges the same
   number of records in batches of the same size (SQS: ReceiveMessage + DeleteMessageBatch;
   Redis: XREADGROUP + XACK) — what the broker allows with no function at all.
2. **Latency when idle**: one record at a time into an enabled mapping whose environment is warm;
   the record carries its send time, the handler logs how long ago that was at its first line
   (same clock), read back through the CloudWatch Logs API. **Baseline:** the plain consumer's
   send → receive time, one record at a time (SQS long poll; Redis blocking XREADGROUP).

    python bench/event_sources.py [--quick] [--records N] [--samples N] [--sources sqs,redis] [--json [FILE]]

Redis is skipped (with a note) when nothing answers at --redis-url.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

import common

HANDLER = """\
import time

def handler(event, context):
    now = time.time() * 1000
    for record in event.get("Records", []):
        body = record.get("body")
        if body is None and "kinesis" in record:
            import base64
            body = base64.b64decode(record["kinesis"]["data"]).decode()
        if body and body.startswith("t="):
            print("LAT %.3f" % (now - float(body[2:])))
"""

BATCH_SIZES = (1, 10, 100)


# ------------------------------------------------------------------ the brokers
def moto_server() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def sqs_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench")


def redis_client(url: str) -> Any | None:
    try:
        import redis

        client = redis.Redis.from_url(url)
        client.ping()
        return client
    except Exception:
        return None


class Sqs:
    name = "sqs"

    def __init__(self, endpoint: str) -> None:
        self.client = sqs_client(endpoint)

    def make(self) -> tuple[str, str]:
        url = self.client.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def produce(self, where: str, count: int, body: Callable[[int], str] = lambda i: f"r{i}") -> None:
        for start in range(0, count, 10):
            self.client.send_message_batch(QueueUrl=where, Entries=[
                {"Id": str(i), "MessageBody": body(i)} for i in range(start, min(count, start + 10))])

    def left(self, where: str, mapping: str | None) -> int:
        attrs = self.client.get_queue_attributes(QueueUrl=where, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def consume(self, where: str, count: int, batch: int) -> None:
        done = 0
        while done < count:
            got = self.client.receive_message(QueueUrl=where, MaxNumberOfMessages=min(10, batch),
                                              WaitTimeSeconds=1).get("Messages", [])
            if got:
                self.client.delete_message_batch(QueueUrl=where, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
            done += len(got)

    def round_trip(self, where: str) -> float:
        started = time.perf_counter()
        self.client.send_message(QueueUrl=where, MessageBody="ping")
        while True:
            got = self.client.receive_message(QueueUrl=where, MaxNumberOfMessages=1, WaitTimeSeconds=5).get("Messages", [])
            if got:
                self.client.delete_message(QueueUrl=where, ReceiptHandle=got[0]["ReceiptHandle"])
                return (time.perf_counter() - started) * 1000

    def mapping_args(self, where: str, arn: str, batch: int) -> dict[str, Any]:
        return {"EventSourceArn": arn, "BatchSize": batch, "MaximumBatchingWindowInSeconds": 1 if batch > 10 else 0}


class RedisStreams:
    name = "redis"

    def __init__(self, client: Any) -> None:
        self.client = client

    def make(self) -> tuple[str, str]:
        key = f"bench-{uuid.uuid4().hex[:8]}"
        self.client.xadd(key, {"data": "created"})
        self.client.xtrim(key, maxlen=0)
        return key, f"arn:aws:redis:us-east-1:123456789012:bench/stream/{key}"

    def produce(self, where: str, count: int, body: Callable[[int], str] = lambda i: f"r{i}") -> None:
        pipe = self.client.pipeline(transaction=False)
        for i in range(count):
            pipe.xadd(where, {"data": body(i), "partitionKey": "k"})
            if i % 500 == 499:
                pipe.execute()
        pipe.execute()

    def left(self, where: str, mapping: str | None) -> int:
        total = self.client.xlen(where)
        for group in self.client.xinfo_groups(where):
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if mapping is None or mapping in name:
                read = group.get("entries-read") or 0
                return max(0, total - int(read)) + int(group.get("pending") or 0)
        return total

    def consume(self, where: str, count: int, batch: int) -> None:
        group = f"baseline-{uuid.uuid4().hex[:6]}"
        self.client.xgroup_create(where, group, id="0")
        done = 0
        while done < count:
            got = self.client.xreadgroup(group, "c", {where: ">"}, count=batch, block=1000)
            for _, entries in got or []:
                self.client.xack(where, group, *[entry_id for entry_id, _ in entries])
                done += len(entries)
        self.client.xgroup_destroy(where, group)

    def round_trip(self, where: str) -> float:
        group = f"rt-{uuid.uuid4().hex[:6]}"
        self.client.xgroup_create(where, group, id="$")
        started = time.perf_counter()
        self.client.xadd(where, {"data": "ping"})
        while True:
            got = self.client.xreadgroup(group, "c", {where: ">"}, count=1, block=5000)
            if got:
                self.client.xack(where, group, got[0][1][0][0])
                self.client.xgroup_destroy(where, group)
                return (time.perf_counter() - started) * 1000

    def mapping_args(self, where: str, arn: str, batch: int) -> dict[str, Any]:
        return {"EventSourceArn": arn, "BatchSize": batch, "StartingPosition": "TRIM_HORIZON",
                "MaximumBatchingWindowInSeconds": 0}


# ------------------------------------------------------------------ phases
def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def wait_enabled(lam: Any, uuid_: str) -> None:
    wait_until(lambda: lam.get_event_source_mapping(UUID=uuid_)["State"] == "Enabled", 30, "the mapping's start")


def throughput(report: common.Report, lam: Any, function: str, source: Any, records: int) -> None:
    for batch in BATCH_SIZES:
        where, arn = source.make()
        source.produce(where, records)
        mapping = lam.create_event_source_mapping(FunctionName=function, **source.mapping_args(where, arn, batch))
        started = time.perf_counter()
        wait_until(lambda: source.left(where, mapping["UUID"]) == 0, 600, f"{source.name} batch {batch} drain")
        elapsed = time.perf_counter() - started
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        rate = records / elapsed
        report.figures(f"{source.name}_batch_{batch}", f"{source.name}: records/s to a function at BatchSize {batch}",
                       {"n": records, "seconds": round(elapsed, 3), "throughput_per_s": rate})
        where, _ = source.make()
        source.produce(where, records)
        started = time.perf_counter()
        source.consume(where, records, batch)
        base = records / (time.perf_counter() - started)
        report.figures(f"{source.name}_plain_batch_{batch}",
                       f"{source.name}: plain consumer (read + ack, no function) in batches of {batch}",
                       {"n": records, "throughput_per_s": base}, baseline=True)
        report.ratio(f"{source.name}_batch_{batch}_vs_plain", f"{source.name} BatchSize {batch}: Squall / plain consumer",
                     common.ratio(rate, base))


def latency(report: common.Report, server: common.Server, lam: Any, function: str, source: Any, samples: int) -> None:
    import boto3

    where, arn = source.make()
    mapping = lam.create_event_source_mapping(FunctionName=function, **source.mapping_args(where, arn, 1))
    wait_enabled(lam, mapping["UUID"])
    logs = boto3.client("logs", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.credentials[0], aws_secret_access_key=server.credentials[1])
    group = f"/aws/lambda/{function}"

    def lat_lines() -> list[float]:
        events = [e for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, filterPattern="LAT")
                  for e in page["events"]]
        return [float(e["message"].split()[1]) for e in events if e["message"].startswith("LAT ")]

    seen = len(lat_lines())
    source.produce(where, 1, lambda i: f"t={time.time() * 1000:.3f}")  # warm the environment
    wait_until(lambda: len(lat_lines()) > seen, 60, "the warm-up record")
    seen = len(lat_lines())
    for _ in range(samples):
        source.produce(where, 1, lambda i: f"t={time.time() * 1000:.3f}")
        wait_until(lambda: len(lat_lines()) > seen, 60, "a latency record")
        seen += 1
        time.sleep(0.05)
    values = lat_lines()[-samples:]
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    report.latency(f"{source.name}_latency", f"{source.name}: produce → handler start, idle", values)
    where, _ = source.make()
    base = [source.round_trip(where) for _ in range(samples)]
    report.latency(f"{source.name}_plain_latency", f"{source.name}: plain consumer produce → receive", base, baseline=True)
    report.ratio(f"{source.name}_latency_vs_plain", f"{source.name} p50 latency: Squall / plain consumer",
                 common.ratio(common.summarize(values)["median_ms"], common.summarize(base)["median_ms"]))


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=None, help="records per throughput run (default 2000; quick 100)")
    p.add_argument("--samples", type=int, default=None, help="latency samples (default 50; quick 5)")
    p.add_argument("--sources", default="sqs,redis", help="which sources: sqs, redis (comma-separated)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = p.parse_args()
    records = args.records or (100 if args.quick else 2000)
    samples = args.samples or (5 if args.quick else 50)
    wanted = set(args.sources.split(","))
    report = common.Report("event_sources", "event source mappings: records/s and produce→start latency", args)
    moto, moto_url = moto_server()
    redis = redis_client(args.redis_url) if "redis" in wanted else None
    env = {"SQUALL_AWS_ENDPOINT": moto_url, "SQUALL_AWS_ACCESS_KEY_ID": "bench", "SQUALL_AWS_SECRET_ACCESS_KEY": "bench",
           "SQUALL_EVENT_SOURCE_BROKERS": json.dumps({"bench": args.redis_url})}
    try:
        with common.server_for(args, env) as server:
            health = common.health(server.endpoint)
            report.server(server, health)
            lam = common.lambda_client(server.endpoint, credentials=server.credentials)
            function = common.deploy(lam, HANDLER, common.pick_runtime(health), timeout=10)
            sources: list[Any] = []
            if "sqs" in wanted:
                sources.append(Sqs(moto_url))
            if "redis" in wanted:
                if redis is None:
                    report.note(f"Redis Streams skipped: nothing answers at {args.redis_url}")
                else:
                    sources.append(RedisStreams(redis))
            for source in sources:
                report.section(f"{source.name}: throughput ({records} records per run)")
                throughput(report, lam, function, source, records)
                report.section(f"{source.name}: latency when idle ({samples} samples)")
                latency(report, server, lam, function, source, samples)
            common.delete_quietly(lam, function)
    finally:
        moto.stop()
    report.finish()


if __name__ == "__main__":
    main()
