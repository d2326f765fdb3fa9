"""The ``X-Amzn-Trace-Id`` of invocations, and the recursive loops it reveals.

A trace header is ``Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;Sampled=0`` plus, as Lambda
adds it, ``Lineage=<8 hex>:<count>[|<8 hex>:<count>…]``: how many times the request already
passed through each function (the 8 hex: a hash of the function's ARN). A function's runtime
sees its invocation's header as ``_X_AMZN_TRACE_ID``; the AWS SDKs send it back as the
``X-Amzn-Trace-Id`` of the calls made from there (botocore's recursion-detection handler), so
an asynchronous invocation of a function by a function carries the lineage on. Once the same
function has been reached ``MAX_HOPS`` times in one chain, the chain is a recursive loop: with
``RecursiveLoop`` ``Terminate`` (the default) Squall does not invoke it again.

Everything here is pure (no clock of its own, no I/O).
"""

from __future__ import annotations

import hashlib

MAX_HOPS = 16
_FIELD_ORDER = ("Root", "Parent", "Sampled", "Lineage")


def new_trace(request_id: str, now: float) -> str:
    """A fresh trace header for an invocation that came without one."""
    hexid = request_id.replace("-", "")
    return f"Root=1-{int(now):08x}-{hexid[:24]};Parent={hexid[-16:]};Sampled=0"


def for_invocation(header: str | None, active: bool, request_id: str, now: float) -> str:
    """The header an invocation runs with: the caller's, or a new one; a function with Active
    tracing samples a trace whose sampling is not decided yet (PassThrough follows the caller)."""
    if not header:
        return new_trace(request_id, now).replace("Sampled=0", "Sampled=1") if active else new_trace(request_id, now)
    if active and "Sampled=" not in header:
        return header + ";Sampled=1"
    return header


def parse(header: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            fields[key] = value
    return fields


def render(fields: dict[str, str]) -> str:
    keys = [k for k in _FIELD_ORDER if k in fields] + [k for k in fields if k not in _FIELD_ORDER]
    return ";".join(f"{k}={fields[k]}" for k in keys)


def function_hash(function_arn: str) -> str:
    return hashlib.sha256(function_arn.encode()).hexdigest()[:8]


def lineage(fields: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in fields.get("Lineage", "").split("|"):
        key, _, count = entry.partition(":")
        if key and count.isdigit():
            counts[key] = int(count)
    return counts


def hop(header: str | None, function_arn: str, request_id: str, now: float) -> tuple[str, int]:
    """The header an invocation of ``function_arn`` runs with, and how many times this chain
    has now reached that function (1 the first time)."""
    fields = parse(header) if header else {}
    if "Root" not in fields:
        fields = {**parse(new_trace(request_id, now)), **({"Lineage": fields["Lineage"]} if "Lineage" in fields else {})}
    counts = lineage(fields)
    key = function_hash(function_arn)
    counts[key] = counts.get(key, 0) + 1
    fields["Lineage"] = "|".join(f"{k}:{v}" for k, v in counts.items())
    return render(fields), counts[key]
