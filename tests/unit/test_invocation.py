"""Invocation results, Lambda's platform error payloads, REPORT lines, per-invocation log capture
(squall/invoke/invocation.py, squall/environments/capture.py's InvocationLog) and exit wording
(squall/sandbox/base.py)."""

from __future__ import annotations

import json
import signal

import pytest

from squall.environments.capture import InvocationLog
from squall.invoke.invocation import (
    LOG_TAIL_BYTES,
    MAX_RESPONSE_PAYLOAD,
    MAX_SYNC_PAYLOAD,
    InvocationResult,
    billed_ms,
    error_payload,
    exit_error,
    report_line,
    response_too_large,
    timeout_error,
)
from squall.sandbox.base import exit_description

RID = "fa4621fe-b327-495c-864c-52a65441acda"


# ================================================================== REPORT line


def test_report_line_cold_start_matches_lambda() -> None:
    line = report_line(RID, 2.02, 128, 38, 103.22)
    assert line == (
        f"REPORT RequestId: {RID}\tDuration: 2.02 ms\tBilled Duration: 106 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 38 MB\tInit Duration: 103.22 ms\t"
    )


def test_report_line_warm_has_no_init_duration() -> None:
    line = report_line(RID, 1.234, 256, 50, None)
    assert line == (
        f"REPORT RequestId: {RID}\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 50 MB\t"
    )
    assert "Init Duration" not in line


def test_report_line_status_and_error_type() -> None:
    line = report_line(RID, 3000.0, 128, 40, None, status="timeout")
    assert line.endswith("\tMax Memory Used: 40 MB\tStatus: timeout\t")
    line = report_line(RID, 10.0, 128, 40, 5.0, status="error", error_type="Runtime.ExitError")
    assert line.endswith("\tInit Duration: 5.00 ms\tStatus: error\tError Type: Runtime.ExitError\t")
    line = report_line(RID, 10.0, 128, 40, None, error_type="Runtime.ExitError")
    assert line.endswith("\tMax Memory Used: 40 MB\tError Type: Runtime.ExitError\t")
    assert "Status" not in line


def test_report_line_fields_are_tab_separated_with_trailing_tab() -> None:
    line = report_line(RID, 12.5, 512, 100, 80.125, status="error", error_type="X")
    assert line.endswith("\t") and not line.endswith("\t\t")
    fields = line[:-1].split("\t")
    assert [f.split(":")[0] for f in fields] == [
        "REPORT RequestId",
        "Duration",
        "Billed Duration",
        "Memory Size",
        "Max Memory Used",
        "Init Duration",
        "Status",
        "Error Type",
    ]
    assert "  " not in line and "\n" not in line


@pytest.mark.parametrize(
    ("duration", "shown"),
    [(0.0, "0.00"), (0.004, "0.00"), (1.005, "1.00"), (1.006, "1.01"), (999.999, "1000.00"), (12345.6, "12345.60")],
)
def test_report_line_durations_have_two_decimals(duration: float, shown: str) -> None:
    assert f"\tDuration: {shown} ms\t" in report_line(RID, duration, 128, 1, None)


@pytest.mark.parametrize(
    ("duration", "init", "billed"),
    [
        (2.02, 103.22, 106),  # the reference's example: ceil(2.02 + 103.22)
        (1.0, None, 1),
        (1.01, None, 2),
        (0.0, None, 1),  # minimum 1 ms
        (0.2, None, 1),
        (0.0, 0.0, 1),
        (99.99, 0.01, 100),  # exact integer sum is not rounded up further
        (100.0, None, 100),
        (3000.0, None, 3000),
        (0.5, 0.6, 2),
    ],
)
def test_billed_duration(duration: float, init: float | None, billed: int) -> None:
    assert billed_ms(duration, init) == billed
    assert f"\tBilled Duration: {billed} ms\t" in report_line(RID, duration, 128, 1, init)


def test_init_duration_zero_is_still_shown_when_cold() -> None:
    assert "\tInit Duration: 0.00 ms\t" in report_line(RID, 1.0, 128, 1, 0.0)


# ================================================================== error payloads


def test_timeout_error_wording() -> None:
    body = json.loads(timeout_error(RID, 3))
    assert body == {"errorMessage": f"RequestId: {RID} Error: Task timed out after 3.00 seconds", "errorType": "Sandbox.Timedout"}
    assert json.loads(timeout_error("r", 900))["errorMessage"] == "RequestId: r Error: Task timed out after 900.00 seconds"
    assert json.loads(timeout_error("r", 0.5))["errorMessage"].endswith("after 0.50 seconds")


@pytest.mark.parametrize("how", ["exit status 1", "signal: killed"])
def test_exit_error_wording(how: str) -> None:
    body = json.loads(exit_error(RID, how))
    assert body == {"errorMessage": f"RequestId: {RID} Error: Runtime exited with error: {how}", "errorType": "Runtime.ExitError"}


def test_response_too_large_wording() -> None:
    assert MAX_RESPONSE_PAYLOAD == 6291556
    assert json.loads(response_too_large()) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_error_payload_key_order_and_request_id() -> None:
    # Lambda's own payloads list errorMessage first; requestId only when given.
    assert error_payload("T", "m") == b'{"errorMessage":"m","errorType":"T"}'
    assert error_payload("T", "m", "r") == b'{"errorMessage":"m","errorType":"T","requestId":"r"}'
    assert json.loads(error_payload("T", 'quote " \u00e9')) == {"errorMessage": 'quote " \u00e9', "errorType": "T"}


def test_payload_limits() -> None:
    assert MAX_SYNC_PAYLOAD == 6291456
    assert LOG_TAIL_BYTES == 4096


def test_invocation_result_cold_flag() -> None:
    warm = InvocationResult("r", b"{}", "$LATEST")
    cold = InvocationResult("r", b"{}", "$LATEST", init_duration_ms=0.0)
    assert not warm.cold and cold.cold
    assert warm.function_error is None and warm.content_type == "application/json"


# ================================================================== InvocationLog


def test_log_accepts_until_cap_counting_newlines() -> None:
    log = InvocationLog(cap=10)
    assert log.accept("1234")  # 5 bytes with its newline
    assert log.accept("abcd")  # 10: exactly at the cap
    assert log.size == 10 and log.dropped == 0
    assert not log.accept("")  # even an empty line costs its newline
    assert not log.accept("xyz")
    assert (log.size, log.dropped) == (10, 1 + 4)
    assert log.tail() == b"1234\nabcd\n"


def test_log_drops_oversized_line_but_keeps_later_small_ones() -> None:
    log = InvocationLog(cap=20)
    assert log.accept("a" * 5)
    assert not log.accept("b" * 30)
    assert log.accept("c" * 5)
    assert (log.size, log.dropped) == (12, 31)
    assert log.tail() == b"aaaaa\nccccc\n"


def test_log_cap_counts_utf8_bytes() -> None:
    # The cap is in bytes (max_log_bytes_per_invocation): a 3-byte character counts 3.
    log = InvocationLog(cap=10)
    assert log.accept("\u20ac\u20ac")  # 6 bytes + newline = 7
    assert log.size == 7
    assert not log.accept("\u20ac")  # 3 + 1 = 4 > 3 remaining
    assert log.dropped == 4
    assert log.accept("ab")
    assert log.size == 10


def test_log_dropped_accounting_over_many_lines() -> None:
    log = InvocationLog(cap=1000)
    accepted = sum(log.accept(f"line {i:05d}") for i in range(500))  # 11 bytes each
    assert accepted == 90
    assert log.size == 990
    assert log.dropped == (500 - 90) * 11
    assert log.size + log.dropped == 500 * 11


def test_tail_small_log_is_everything() -> None:
    log = InvocationLog(cap=1 << 20)
    for line in ("START RequestId: r Version: $LATEST", "hello", "END RequestId: r"):
        log.accept(line)
    assert log.tail() == b"START RequestId: r Version: $LATEST\nhello\nEND RequestId: r\n"


def test_tail_empty() -> None:
    assert InvocationLog(cap=100).tail() == b""


@pytest.mark.parametrize("width", [1, 7, 100, 1000, 3000, 4095, 4096, 5000])
def test_tail_is_the_last_4096_bytes(width: int) -> None:
    log = InvocationLog(cap=1 << 20)
    everything = b""
    for i in range(40):
        line = (f"{i:04d}" + "x" * width)[:width]
        log.accept(line)
        everything += line.encode() + b"\n"
    report = "REPORT RequestId: r\tDuration: 1.00 ms\t"
    log.accept(report)
    everything += report.encode() + b"\n"
    tail = log.tail()
    assert len(tail) <= LOG_TAIL_BYTES
    assert tail.endswith(report.encode() + b"\n")
    # Exactly what Lambda returns: the last 4 KB of the output, cut mid-line if need be.
    assert tail == everything[-LOG_TAIL_BYTES:]


def test_tail_of_multibyte_lines_is_the_last_4096_bytes() -> None:
    log = InvocationLog(cap=1 << 20)
    everything = b""
    for _ in range(10):
        log.accept("\u00e9" * 1500)  # 3000 bytes each
        everything += ("\u00e9" * 1500 + "\n").encode()
    log.accept("END")
    everything += b"END\n"
    tail = log.tail()
    assert len(tail) == LOG_TAIL_BYTES
    assert tail == everything[-LOG_TAIL_BYTES:]
    assert tail.endswith(("\u00e9" * 5 + "\nEND\n").encode())


def test_tail_single_huge_line() -> None:
    log = InvocationLog(cap=1 << 20)
    log.accept("A" + "b" * 10000 + "Z")
    tail = log.tail()
    assert len(tail) == LOG_TAIL_BYTES
    assert tail.endswith(b"bZ\n")


def test_tail_ignores_lines_beyond_the_cap() -> None:
    log = InvocationLog(cap=20)
    log.accept("kept line")
    log.accept("this one is far too long to fit")
    assert log.tail() == b"kept line\n"


# ================================================================== exit_description


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exit status 0"),
        (1, "exit status 1"),
        (2, "exit status 2"),
        (127, "exit status 127"),
        (255, "exit status 255"),
        (-signal.SIGKILL, "signal: killed"),
        (-signal.SIGSEGV, "signal: segmentation fault"),
        (-signal.SIGABRT, "signal: aborted"),
        (-signal.SIGTERM, "signal: terminated"),
        (-signal.SIGBUS, "signal: bus error"),
        (-signal.SIGPIPE, "signal: broken pipe"),
    ],
)
def test_exit_description(code: int, text: str) -> None:
    assert exit_description(code) == text


def test_exit_description_unknown_signal() -> None:
    assert exit_description(-200) == "signal: signal 200"


def test_exit_description_in_exit_error() -> None:
    body = json.loads(exit_error("r", exit_description(-signal.SIGKILL)))
    assert body["errorMessage"] == "RequestId: r Error: Runtime exited with error: signal: killed"
