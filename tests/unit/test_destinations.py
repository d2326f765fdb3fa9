"""Lambda's invocation record and dead-letter attributes, exactly."""

from __future__ import annotations

import orjson

from squall.async_invoke.destinations import dead_letter_attributes, invocation_record, record_timestamp

ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST"


def test_failure_record_matches_lambda():
    error = b'{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}'
    record = orjson.loads(
        invocation_record(
            request_id="e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            function_arn=ARN,
            condition="RetriesExhausted",
            invoke_count=3,
            request_payload=b'{"ORDER_IDS": ["9e07af03"]}',
            status_code=200,
            executed_version="$LATEST",
            function_error="Unhandled",
            response_payload=error,
            timestamp=1573755365.568,
        )
    )
    assert record == {
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"ORDER_IDS": ["9e07af03"]},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []},
    }
    assert list(record) == ["version", "timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"]


def test_success_record_has_no_function_error():
    record = orjson.loads(
        invocation_record(
            request_id="r",
            function_arn=ARN,
            condition="Success",
            invoke_count=1,
            request_payload=b"",
            status_code=200,
            executed_version="$LATEST",
            function_error=None,
            response_payload=b"null",
            timestamp=0.0,
        )
    )
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] is None and record["requestPayload"] == {}
    assert record["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_record_of_an_event_that_never_ran_has_no_response_payload():
    record = orjson.loads(
        invocation_record(
            request_id="r",
            function_arn=ARN,
            condition="EventAgeExceeded",
            invoke_count=0,
            request_payload=b"{}",
            status_code=429,
            executed_version=None,
            function_error=None,
            response_payload=None,
            timestamp=0.0,
        )
    )
    assert "responsePayload" not in record and record["responseContext"]["statusCode"] == 429


def test_non_json_response_is_kept_as_text():
    record = orjson.loads(
        invocation_record(
            request_id="r", function_arn=ARN, condition="Success", invoke_count=1, request_payload=b"{}",
            status_code=200, executed_version="$LATEST", function_error=None, response_payload=b"\xffraw", timestamp=0.0,
        )
    )
    assert record["responsePayload"] == "\ufffdraw"


def test_dead_letter_attributes():
    error = orjson.dumps({"errorMessage": "x" * 5000, "errorType": "ValueError"})
    attributes = dead_letter_attributes("rid", 200, error)
    assert attributes["RequestID"] == "rid" and attributes["ErrorCode"] == "200"
    assert attributes["ErrorMessage"] == "x" * 1024
    assert dead_letter_attributes("rid", 429, None) == {"RequestID": "rid", "ErrorCode": "429"}


def test_timestamp_milliseconds():
    assert record_timestamp(1573755365.0999) == "2019-11-14T18:16:05.099Z"
