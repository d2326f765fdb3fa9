"""GET /metrics against a real server: scraped after known traffic and parsed with
prometheus-client's own parser; who may scrape (a signed request, or the metrics token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_function, signed_headers, start_server

TOKEN = "scrape-me-please"
CODE = """
import time
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return "ok"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("squall-metrics"), env={"SQUALL_METRICS_TOKEN": TOKEN})
    yield running
    running.stop()


def scrape(server, headers: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = urllib.request.Request(server.endpoint + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_invocations_errors_cold_starts_and_durations_are_counted(server):
    lam = server.client("lambda")
    name = create_function(lam, CODE, Timeout=10)
    for payload in ({}, {}, {"fail": True}, {"sleep": 0.3}):
        lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    samples = scrape(server, {"Authorization": f"Bearer {TOKEN}"})
    latest = {"function": name, "qualifier": "$LATEST", "runtime": "python3.11"}
    live = {**latest, "qualifier": "live"}
    assert value(samples, "squall_invocations_total", **latest) == 4
    assert value(samples, "squall_invocations_total", **live) == 1
    assert value(samples, "squall_invocation_errors_total", **latest, error_type="ValueError") == 1
    assert value(samples, "squall_cold_starts_total", **latest) == 1
    assert value(samples, "squall_cold_starts_total", **live) == 1  # version 1's first environment
    assert value(samples, "squall_invocation_duration_seconds_count", **latest) == 4
    assert value(samples, "squall_invocation_duration_seconds_sum", **latest) >= 0.3
    assert value(samples, "squall_invocation_duration_seconds_bucket", **latest, le="0.25") == 3  # the 0.3 s one is above
    assert value(samples, "squall_init_duration_seconds_count", **latest) == 1
    assert value(samples, "squall_concurrent_executions", function=name) == 0  # none running now
    assert value(samples, "squall_environments", state="idle") >= 1


def test_throttles_and_async_events_are_counted(server):
    lam = server.client("lambda", retries={"total_max_attempts": 1})  # one request: one throttle
    name = create_function(lam, CODE)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException):
        lam.invoke(FunctionName=name, Payload=b"{}")
    lam.delete_function_concurrency(FunctionName=name)
    for _ in range(3):
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    import time
    deadline = time.time() + 30
    while time.time() < deadline:
        samples = scrape(server, {"Authorization": f"Bearer {TOKEN}"})
        # the depth and the outcome counters are two reads: wait until both show the events settled
        if (value(samples, "squall_async_events_total", function=name, outcome="succeeded") == 3
                and value(samples, "squall_async_queue_depth", function=name) == 0):
            break
        time.sleep(0.2)
    assert value(samples, "squall_throttles_total", function=name,
                 reason="ReservedFunctionConcurrentInvocationLimitExceeded") == 1
    assert value(samples, "squall_async_events_received_total", function=name) == 3
    assert value(samples, "squall_async_events_total", function=name, outcome="succeeded") == 3
    assert value(samples, "squall_async_queue_depth", function=name) == 0
    lam.delete_function(FunctionName=name)  # its series go with it
    samples = scrape(server, {"Authorization": f"Bearer {TOKEN}"})
    assert not any(dict(labels).get("function") == name and key.startswith("squall_invocations")
                   for key, labels in samples)


def test_who_may_scrape(server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(server, {})
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as wrong:
        scrape(server, {"Authorization": "Bearer not-the-token"})
    assert wrong.value.code == 403
    assert scrape(server, signed_headers(server, "GET", "/metrics"))  # any signed identity may
