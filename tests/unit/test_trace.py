"""X-Amzn-Trace-Id and its Lineage (squall/invoke/trace.py): hop counting for recursive loops."""

from __future__ import annotations

from squall.invoke.trace import MAX_HOPS, function_hash, hop, lineage, new_trace, parse, render

ARN = "arn:aws:lambda:us-east-1:123456789012:function:loop"
OTHER = "arn:aws:lambda:us-east-1:123456789012:function:other"
REQUEST = "3f1c2b9a-8d4e-4f6a-9b1c-2d3e4f5a6b7c"


def test_a_new_trace_has_lambdas_shape():
    trace = new_trace(REQUEST, 1_700_000_000.0)
    fields = parse(trace)
    assert fields["Root"] == "1-6553f100-3f1c2b9a8d4e4f6a9b1c2d3e" and fields["Sampled"] == "0"
    assert len(fields["Parent"]) == 16 and render(fields) == trace


def test_hops_count_per_function_along_one_chain():
    header, count = hop(None, ARN, REQUEST, 1_700_000_000.0)
    assert count == 1 and parse(header)["Lineage"] == f"{function_hash(ARN)}:1"
    root = parse(header)["Root"]
    for expected in range(2, MAX_HOPS + 3):
        header, count = hop(header, ARN, REQUEST, 1_700_000_001.0)
        assert count == expected and parse(header)["Root"] == root  # the chain keeps its root
    header, other = hop(header, OTHER, REQUEST, 0.0)
    assert other == 1 and lineage(parse(header)) == {function_hash(ARN): MAX_HOPS + 2, function_hash(OTHER): 1}


def test_a_callers_header_without_lineage_or_root_is_kept_and_extended():
    header, count = hop("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", ARN, REQUEST, 0.0)
    fields = parse(header)
    assert count == 1 and fields["Root"] == "1-5759e988-bd862e3fe1be46a994272793" and fields["Sampled"] == "1"
    header, count = hop("Lineage=" + function_hash(ARN) + ":7", ARN, REQUEST, 0.0)  # no Root: one is made
    assert count == 8 and parse(header)["Root"].startswith("1-")
    header, count = hop("garbage;;=x", ARN, REQUEST, 0.0)
    assert count == 1
