"""EventInvokeConfig: validation, Put replaces, Update merges, the API document, destinations."""

from __future__ import annotations

import pytest

from squall.arn import Arns
from squall.async_invoke.destinations import Destination, DestinationKind
from squall.async_invoke.configs import EventInvokeConfig, apply_params
from squall.errors import InvalidParameterValue

ARNS = Arns("us-east-1", "123456789012")
QUEUE = "arn:aws:sqs:us-east-1:123456789012:failures"
TOPIC = "arn:aws:sns:us-east-1:123456789012:done"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:next"


def test_defaults_apply_when_unset():
    limits = EventInvokeConfig("fn").limits
    assert (limits.maximum_retry_attempts, limits.maximum_event_age) == (2, 21600)
    limits = EventInvokeConfig("fn", maximum_retry_attempts=0, maximum_event_age=60).limits
    assert (limits.maximum_retry_attempts, limits.maximum_event_age) == (0, 60)


def test_put_replaces_and_update_merges():
    base = EventInvokeConfig("fn", maximum_retry_attempts=1, maximum_event_age=600, on_failure=QUEUE)
    put = apply_params(base, {"DestinationConfig": {"OnSuccess": {"Destination": TOPIC}}}, merge=False)
    assert (put.maximum_retry_attempts, put.maximum_event_age, put.on_success, put.on_failure) == (None, None, TOPIC, None)
    update = apply_params(base, {"MaximumRetryAttempts": 0, "DestinationConfig": {"OnSuccess": {"Destination": TOPIC}}}, merge=True)
    assert (update.maximum_retry_attempts, update.maximum_event_age, update.on_success, update.on_failure) == (0, 600, TOPIC, QUEUE)
    # An empty destination removes it.
    cleared = apply_params(base, {"DestinationConfig": {"OnFailure": {"Destination": ""}}}, merge=True)
    assert cleared.on_failure is None and cleared.maximum_event_age == 600


def test_put_needs_at_least_one_setting():
    with pytest.raises(InvalidParameterValue, match="at least one of error handling or destination"):
        apply_params(EventInvokeConfig("fn"), {"FunctionName": "fn"}, merge=False)


@pytest.mark.parametrize(
    "params",
    [{"MaximumRetryAttempts": 3}, {"MaximumRetryAttempts": -1}, {"MaximumEventAgeInSeconds": 59}, {"MaximumEventAgeInSeconds": 21601}],
)
def test_ranges(params):
    with pytest.raises(InvalidParameterValue, match="1 validation error detected"):
        apply_params(EventInvokeConfig("fn"), params, merge=False)


@pytest.mark.parametrize(
    "value, kind, name",
    [
        (FUNCTION, DestinationKind.FUNCTION, "next"),
        (FUNCTION + ":$LATEST", DestinationKind.FUNCTION, "next"),
        (QUEUE, DestinationKind.QUEUE, "failures"),
        ("arn:aws:sqs:eu-west-1:123456789012:jobs.fifo", DestinationKind.QUEUE, "jobs.fifo"),
        (TOPIC, DestinationKind.TOPIC, "done"),
        ("https://hooks.example.com/squall?x=1", DestinationKind.WEBHOOK, ""),
        ("http://127.0.0.1:8080/hook", DestinationKind.WEBHOOK, ""),
    ],
)
def test_destination_kinds(value, kind, name):
    destination = Destination.parse(value)
    assert destination.kind == kind and destination.name == name and destination.address == value


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:events:us-east-1:123456789012:event-bus/default",
        "arn:aws:s3:::bucket",
        "arn:aws:lambda:us-east-1:123456789012:layer:x:1",
        "arn:aws:sqs::123456789012:no-region",
        "ftp://example.com/x",
        "not a destination",
    ],
)
def test_unsupported_destinations_are_refused(value):
    with pytest.raises(InvalidParameterValue, match="not supported"):
        apply_params(EventInvokeConfig("fn"), {"DestinationConfig": {"OnFailure": {"Destination": value}}}, merge=False)


def test_api_document():
    config = EventInvokeConfig("fn", maximum_retry_attempts=1, on_failure=QUEUE, last_modified=1700000000.123)
    assert config.to_api(ARNS) == {
        "LastModified": 1700000000.123,  # epoch seconds, a JSON number
        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST",
        "MaximumRetryAttempts": 1,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": QUEUE}},
    }
    again = EventInvokeConfig.from_record("fn", "$LATEST", config.to_record(), config.last_modified)
    assert again == config
