"""EventBridge triggers: PutEvents accepted per second, PutEvents → handler-start latency when
idle, and how late ``rate(1 minute)`` schedule ticks fire.

1. **Latency when idle**: one PutEvents at a time (a rule matching it, the function as its
   target) whose detail carries its send time; the handler logs how long ago that was at its
   first line (same clock), read back through the CloudWatch Logs API.
2. **Schedule drift**: a ``rate(1 minute)`` rule targeting the function on the TEST-ONLY fast
   schedule clock (``SQUALL_TEST_SCHEDULE_CLOCK``, squall/triggers/scheduler.py: ``--speed``
   times real time, so a minute passes in 60/speed s). The handler logs the real time it starts
   and the event's ``time``; a tick's due time is the rule's creation time (taken around
   PutRule, ± half its round trip × speed) plus whole minutes. Drift = handler start − due time,
   in real milliseconds: the ticker's poll interval (max(20 ms, 1/speed s)) + the asynchronous
   delivery. p50/p99 over ``--ticks`` ticks.
3. **Throughput**: ``--events`` events through PutEvents from ``--concurrency`` threads, 1 and 10
   entries per call; "accepted" = PutEvents returned (the deliveries are durably queued).
   **Baseline, same run:** a plain asynchronous Invoke (InvocationType Event) per event, same
   threads.

    python bench/event_triggers.py [--quick] [--events N] [--samples N] [--ticks N] [--speed X] [--json [FILE]]
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import common

HANDLER = """\
import json, time

def handler(event, context):
    now = time.time()
    detail = event.get("detail") or {}
    if isinstance(detail, dict) and "t" in detail:
        print("LAT %.3f" % (now * 1000 - float(detail["t"])))
    elif event.get("detail-type") == "Scheduled Event":
        print("TICK %s %.6f" % (event.get("time"), now))
"""


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def clients(server: common.Server) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    key, secret = server.credentials
    config = Config(retries={"max_attempts": 1}, max_pool_connections=64)
    make = lambda service: boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",  # noqa: E731
                                        aws_access_key_id=key, aws_secret_access_key=secret, config=config)
    return make("events"), make("logs")


def log_lines(logs: Any, function: str, prefix: str) -> list[str]:
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{function}",
                                                            filterPattern=prefix)
    try:
        return [e["message"] for page in pages for e in page["events"] if e["message"].startswith(prefix + " ")]
    except logs.exceptions.ResourceNotFoundException:  # no invocation yet: no log group
        return []


def rule_to(events: Any, lam: Any, function: str, window: list[float] | None = None, **rule: Any) -> str:
    """A rule with the function as its target; ``window`` gets the real times around PutRule."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    before = time.time()
    arn = events.put_rule(Name=name, **rule)["RuleArn"]
    if window is not None:
        window[:] = [before, time.time()]
    lam.add_permission(FunctionName=function, StatementId=name, Action="lambda:InvokeFunction",
                       Principal="events.amazonaws.com", SourceArn=arn)
    target = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "f", "Arn": target}])
    return name


def latency(report: common.Report, events: Any, logs: Any, lam: Any, function: str, samples: int) -> None:
    source = f"bench.lat.{uuid.uuid4().hex[:6]}"
    rule = rule_to(events, lam, function, EventPattern=json.dumps({"source": [source]}))

    def put() -> None:
        entry = {"Source": source, "DetailType": "bench", "Detail": json.dumps({"t": time.time() * 1000})}
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0

    seen = len(log_lines(logs, function, "LAT"))
    put()  # warm the environment
    wait_until(lambda: len(log_lines(logs, function, "LAT")) > seen, 60, "the warm-up event")
    seen += 1
    for _ in range(samples):
        put()
        wait_until(lambda: len(log_lines(logs, function, "LAT")) > seen, 60, "a latency event")
        seen += 1
        time.sleep(0.05)
    values = [float(line.split()[1]) for line in log_lines(logs, function, "LAT")][-samples:]
    events.remove_targets(Rule=rule, Ids=["f"])
    events.delete_rule(Name=rule)
    report.latency("putevents_latency", "PutEvents → handler start, idle", values)


def drift(report: common.Report, events: Any, logs: Any, lam: Any, function: str, ticks: int, anchor: float,
          speed: float) -> None:
    def fast(real: float) -> float:
        return anchor + (real - anchor) * speed

    window: list[float] = []
    rule = rule_to(events, lam, function, window, ScheduleExpression="rate(1 minute)")
    before, after = window  # the rule's creation time (its rate lattice's start) lies in between
    wait_until(lambda: len(log_lines(logs, function, "TICK")) >= ticks, 60 / speed * ticks * 3 + 60,
               f"{ticks} schedule ticks")
    events.disable_rule(Name=rule)
    created = (fast(before) + fast(after)) / 2
    late_ms = []
    for line in log_lines(logs, function, "TICK")[:ticks]:
        _, stamp, started = line.split()
        shown = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        k = round((shown - created) / 60)
        due_real = anchor + (created + 60 * k - anchor) / speed
        late_ms.append((float(started) - due_real) * 1000)
    report.latency("schedule_drift", f"rate(1 minute) tick due → handler start (fast clock ×{speed:g}), real ms",
                   late_ms, creation_uncertainty_ms=round((after - before) * 500, 3))


def signed_request(server: common.Server, path: str, body: bytes, headers: dict[str, str], service: str) -> bytes:
    """A whole pre-signed HTTP request (valid for five minutes), sent again and again."""
    url = f"http://{server.host}:{server.port}{path}"
    base = {"Host": f"{server.host}:{server.port}", "Content-Length": str(len(body)), **headers}
    signed = common.sign(server.credentials, "POST", url, body, base, service=service)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n"
    return head.encode("latin-1") + body


async def _blast(host: str, port: int, request: bytes, calls: int, connections: int) -> tuple[float, int]:
    """``calls`` requests over ``connections`` keep-alive connections; (seconds, non-2xx answers)."""
    remaining = calls
    failures = 0

    async def connection() -> None:
        nonlocal remaining, failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                status, _, body = await common.read_response(reader)
                accepted = 200 <= status < 300 and (b"FailedEntryCount" not in body
                                                    or json.loads(body).get("FailedEntryCount") == 0)
                failures += not accepted
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return time.perf_counter() - started, failures


def throughput(report: common.Report, server: common.Server, events: Any, lam: Any, function: str, count: int,
               concurrency: int) -> None:
    """Accepts per second with a client that costs little (pre-signed requests over keep-alive
    connections, as bench/async_accept.py does), so the server, not boto3, is measured."""
    source = f"bench.tput.{uuid.uuid4().hex[:6]}"
    rule_to(events, lam, function, EventPattern=json.dumps({"source": [source]}))
    entry = {"Source": source, "DetailType": "bench", "Detail": "{}"}
    json_headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.PutEvents"}

    rates = {}
    for size in (1, 10):
        body = json.dumps({"Entries": [entry] * size}).encode()
        request = signed_request(server, "/", body, json_headers, "events")
        calls = max(1, count // size)
        asyncio.run(_blast(server.host, server.port, request, min(50, calls), concurrency))  # warm-up
        elapsed, failures = asyncio.run(_blast(server.host, server.port, request, calls, concurrency))
        rates[size] = calls * size / elapsed
        report.figures(f"putevents_{size}_per_call", f"PutEvents events accepted/s ({size} entr{'y' if size == 1 else 'ies'} "
                       f"per call, {concurrency} connections)", {"n": calls * size, "seconds": round(elapsed, 3),
                                                                 "throughput_per_s": rates[size], "failed": failures})
        if failures:
            report.note(f"PutEvents with {size} per call: {failures} answers were not all-accepted")

    request = signed_request(server, common.invoke_path(function), b"{}",
                             {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}, "lambda")
    asyncio.run(_blast(server.host, server.port, request, 50, concurrency))
    elapsed, failures = asyncio.run(_blast(server.host, server.port, request, count, concurrency))
    base = count / elapsed
    report.figures("async_invoke", f"plain async Invoke (Event) accepted/s ({concurrency} connections)",
                   {"n": count, "seconds": round(elapsed, 3), "throughput_per_s": base, "failed": failures}, baseline=True)
    for size in (1, 10):
        report.ratio(f"putevents_{size}_vs_invoke", f"PutEvents ({size} per call) events/s / async Invoke/s",
                     common.ratio(rates[size], base))
    report.target("putevents_per_s", ">= 2,000 events/s accepted durably (10 entries per call)", rates[10], 2000.0,
                  higher_is_better=True)


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=None, help="events per throughput run (default 2000; quick 100)")
    p.add_argument("--samples", type=int, default=None, help="latency samples (default 50; quick 5)")
    p.add_argument("--ticks", type=int, default=None, help="schedule ticks (default 300; quick 10)")
    p.add_argument("--speed", type=float, default=None, help="schedule clock speed (default 300; quick 600)")
    p.add_argument("--concurrency", type=int, default=32, help="keep-alive connections for the throughput runs")
    args = p.parse_args()
    count = args.events or (100 if args.quick else 2000)
    samples = args.samples or (5 if args.quick else 50)
    ticks = args.ticks or (10 if args.quick else 300)
    speed = args.speed or (600.0 if args.quick else 300.0)
    if args.endpoint:
        raise SystemExit("this benchmark starts its own server (the schedule clock is set at its start)")
    anchor = time.time()
    report = common.Report("event_triggers", "EventBridge: PutEvents accepted/s, PutEvents→start latency, "
                           "schedule drift", args)
    env = {"SQUALL_TEST_SCHEDULE_CLOCK": f"{anchor:.6f},{speed:g}"}
    with common.server_for(args, env) as server:
        health = common.health(server.endpoint)
        report.server(server, health)
        lam = common.lambda_client(server.endpoint, pool=64, credentials=server.credentials)
        function = common.deploy(lam, HANDLER, common.pick_runtime(health), timeout=10)
        events, logs = clients(server)
        report.section(f"latency when idle ({samples} samples)")
        latency(report, events, logs, lam, function, samples)
        report.section(f"schedule drift ({ticks} ticks)")
        drift(report, events, logs, lam, function, ticks, anchor, speed)
        report.section(f"throughput ({count} events per run)")
        throughput(report, server, events, lam, function, count, args.concurrency)
        report.note("accepted = the API answered; deliveries run afterwards from the durable async queue")
        common.delete_quietly(lam, function)
    report.finish()


if __name__ == "__main__":
    main()
