"""The function log store: groups, streams, JSON-lines files, filtering and paging."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from squall.observe.logs import LogEvent, LogStore

GROUP = "/aws/lambda/my-fn"
S1 = "2024/01/01/[$LATEST]aaaa"
S2 = "2024/01/01/[$LATEST]bbbb"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def messages(events: list[LogEvent]) -> list[str]:
    return [e.message for e in events]


def page_through(store: LogStore, limit: int, **kwargs) -> tuple[list[LogEvent], int]:
    events: list[LogEvent] = []
    token = None
    pages = 0
    while True:
        page, token = store.filter(GROUP, limit=limit, token=token, **kwargs)
        pages += 1
        assert len(page) <= limit
        events.extend(page)
        if token is None:
            return events, pages
        assert page, "a token must not lead to an empty page"
        assert pages < 1000


# ================================================================== append / flush


def test_append_is_buffered_until_flush(store: LogStore) -> None:
    store.append(GROUP, S1, [(1000, "START"), (1001, "hello")])
    assert store.filter(GROUP) == ([], None)
    assert store.group_exists(GROUP)  # pending events make the group exist already
    store.flush()
    events, token = store.filter(GROUP)
    assert token is None
    assert [(e.timestamp, e.message, e.stream) for e in events] == [(1000, "START", S1), (1001, "hello", S1)]


def test_append_empty_list_creates_nothing(store: LogStore) -> None:
    store.append(GROUP, S1, [])
    assert not store.group_exists(GROUP)
    store.flush()
    assert store.groups() == []
    assert not store.group_exists(GROUP)


def test_flush_twice_does_not_duplicate(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "a")])
    store.flush()
    store.flush()
    store.append(GROUP, S1, [(2, "b")])
    store.flush()
    assert messages(store.filter(GROUP)[0]) == ["a", "b"]


def test_files_are_json_lines_with_quoted_names(store: LogStore) -> None:
    store.append(GROUP, S1, [(5, 'quote " and\nnewline \u00e9')])
    store.flush()
    group_dirs = list(store.root.iterdir())
    assert [p.name for p in group_dirs] == ["%2Faws%2Flambda%2Fmy-fn"]
    files = list(group_dirs[0].iterdir())
    assert len(files) == 1 and files[0].suffix == ".jsonl"
    assert "/" not in files[0].name and "[" not in files[0].stem
    lines = files[0].read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [{"t": 5, "m": 'quote " and\nnewline \u00e9'}]
    assert store.filter(GROUP)[0][0].message == 'quote " and\nnewline \u00e9'


def test_groups_are_listed_decoded(store: LogStore) -> None:
    for group in ("/aws/lambda/b", "/aws/lambda/a", "/aws/lambda/a:weird name"):
        store.append(group, "s", [(1, "x")])
    store.flush()
    assert store.groups() == ["/aws/lambda/a", "/aws/lambda/a:weird name", "/aws/lambda/b"]


def test_group_exists(store: LogStore) -> None:
    assert not store.group_exists(GROUP)
    store.append(GROUP, S1, [(1, "x")])
    assert store.group_exists(GROUP)
    assert not store.group_exists("/aws/lambda/other")
    store.flush()
    assert store.group_exists(GROUP)
    assert not store.group_exists("/aws/lambda/my")  # no prefix matching


def test_unknown_group_reads_empty(store: LogStore) -> None:
    assert store.filter("/aws/lambda/none") == ([], None)
    assert store.streams("/aws/lambda/none") == []


# ================================================================== filtering


@pytest.fixture
def two_streams(store: LogStore) -> LogStore:
    store.append(GROUP, S1, [(100, "a1 START"), (300, "a2 ERROR boom"), (500, "a3 END")])
    store.append(GROUP, S2, [(200, "b1 START"), (300, "b2 ok"), (400, "b3 ERROR bad"), (600, "b4 END")])
    store.flush()
    return store


def test_merge_order_across_streams(two_streams: LogStore) -> None:
    events, _ = two_streams.filter(GROUP)
    assert [e.timestamp for e in events] == [100, 200, 300, 300, 400, 500, 600]
    assert messages(events) == ["a1 START", "b1 START", "a2 ERROR boom", "b2 ok", "b3 ERROR bad", "a3 END", "b4 END"]
    assert [e.stream for e in events][:2] == [S1, S2]


def test_merge_order_with_later_flushes(store: LogStore) -> None:
    store.append(GROUP, S2, [(10, "b-early")])
    store.flush()
    store.append(GROUP, S1, [(5, "a-earlier"), (20, "a-late")])
    store.append(GROUP, S2, [(15, "b-mid")])
    store.flush()
    assert messages(store.filter(GROUP)[0]) == ["a-earlier", "b-early", "b-mid", "a-late"]


def test_filter_by_stream(two_streams: LogStore) -> None:
    assert messages(two_streams.filter(GROUP, streams=[S2])[0]) == ["b1 START", "b2 ok", "b3 ERROR bad", "b4 END"]
    assert messages(two_streams.filter(GROUP, streams=[S1, S2])[0]) == messages(two_streams.filter(GROUP)[0])
    assert two_streams.filter(GROUP, streams=["nope"]) == ([], None)
    assert two_streams.filter(GROUP, streams=[]) == ([], None)


def test_filter_time_range_is_inclusive(two_streams: LogStore) -> None:
    assert [e.timestamp for e in two_streams.filter(GROUP, start=300)[0]] == [300, 300, 400, 500, 600]
    assert [e.timestamp for e in two_streams.filter(GROUP, end=300)[0]] == [100, 200, 300, 300]
    assert [e.timestamp for e in two_streams.filter(GROUP, start=300, end=400)[0]] == [300, 300, 400]
    assert two_streams.filter(GROUP, start=601) == ([], None)
    assert [e.timestamp for e in two_streams.filter(GROUP, start=0, end=10**13)[0]] == [
        100, 200, 300, 300, 400, 500, 600
    ]  # fmt: skip


def test_filter_pattern_is_a_substring_match(two_streams: LogStore) -> None:
    assert messages(two_streams.filter(GROUP, pattern="ERROR")[0]) == ["a2 ERROR boom", "b3 ERROR bad"]
    assert messages(two_streams.filter(GROUP, pattern="error")[0]) == []  # case-sensitive
    assert len(two_streams.filter(GROUP, pattern="")[0]) == 7  # empty pattern matches all
    assert messages(two_streams.filter(GROUP, pattern="END", streams=[S1], start=0)[0]) == ["a3 END"]


# ================================================================== pagination


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 8, 100])
def test_pagination_no_duplicates_no_gaps(two_streams: LogStore, limit: int) -> None:
    full, token = two_streams.filter(GROUP)
    assert token is None
    paged, pages = page_through(two_streams, limit)
    assert paged == full
    assert pages == max(1, -(-len(full) // limit))


def test_pagination_with_filters(store: LogStore) -> None:
    store.append(GROUP, S1, [(t, f"{'hit' if t % 3 == 0 else 'miss'} {t}") for t in range(0, 100, 2)])
    store.append(GROUP, S2, [(t, f"{'hit' if t % 3 == 0 else 'miss'} {t}") for t in range(1, 100, 2)])
    store.flush()
    full, _ = store.filter(GROUP, pattern="hit", start=10, end=80)
    assert [e.timestamp for e in full] == [t for t in range(10, 81) if t % 3 == 0]
    paged, _ = page_through(store, 4, pattern="hit", start=10, end=80)
    assert paged == full
    assert len({e.event_id for e in paged}) == len(paged)


def test_last_page_has_no_token_when_exactly_full(two_streams: LogStore) -> None:
    page, token = two_streams.filter(GROUP, limit=7)
    assert len(page) == 7 and token is None
    page, token = two_streams.filter(GROUP, limit=6)
    assert len(page) == 6 and token is not None
    rest, token2 = two_streams.filter(GROUP, limit=6, token=token)
    assert messages(rest) == ["b4 END"] and token2 is None


def test_token_is_opaque_urlsafe_text(two_streams: LogStore) -> None:
    _, token = two_streams.filter(GROUP, limit=2)
    assert isinstance(token, str)
    assert base64.urlsafe_b64decode(token)  # decodes without error
    assert token.strip("=").replace("-", "").replace("_", "").isalnum()


# ================================================================== event ids


def test_event_ids_are_unique_and_stable(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "a"), (2, "b")])
    store.append(GROUP, S2, [(1, "c")])
    store.flush()
    first = {e.message: e.event_id for e in store.filter(GROUP)[0]}
    assert len(set(first.values())) == 3
    store.append(GROUP, S1, [(0, "earlier but later written")])
    store.flush()
    again = {e.message: e.event_id for e in store.filter(GROUP)[0]}
    assert {k: again[k] for k in first} == first  # unchanged by later writes
    # A fresh store over the same directory (a restart) sees the same ids.
    reopened = LogStore(store.root)
    assert {e.message: e.event_id for e in reopened.filter(GROUP)[0]} == again
    # Ids differ per stream even for the same line number.
    assert first["a"] != first["c"]


# ================================================================== crash safety


def test_torn_last_line_is_skipped(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "complete"), (2, "also complete")])
    store.flush()
    path = next(next(store.root.iterdir()).iterdir())
    with open(path, "ab") as fh:
        fh.write(b'{"t": 3, "m": "tor')  # a crash mid-write
    events, token = store.filter(GROUP)
    assert messages(events) == ["complete", "also complete"] and token is None
    assert store.streams(GROUP) == [(S1, 1, 2)]


def test_writes_after_a_torn_line_are_not_lost(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "before crash")])
    store.flush()
    path = next(next(store.root.iterdir()).iterdir())
    with open(path, "ab") as fh:
        fh.write(b'{"t": 2, "m": "tor')
    # After a restart the next flush appends to the same file.
    restarted = LogStore(store.root)
    restarted.append(GROUP, S1, [(3, "after restart"), (4, "and more")])
    restarted.flush()
    assert messages(restarted.filter(GROUP)[0]) == ["before crash", "after restart", "and more"]
    assert restarted.streams(GROUP) == [(S1, 1, 4)]


def test_blank_and_garbage_lines_are_skipped(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "x")])
    store.flush()
    path = next(next(store.root.iterdir()).iterdir())
    with open(path, "ab") as fh:
        fh.write(b"\n{not json}\n")
    store.append(GROUP, S1, [(2, "y")])
    store.flush()
    assert messages(store.filter(GROUP)[0]) == ["x", "y"]


# ================================================================== streams


def test_streams_first_and_last_timestamps(two_streams: LogStore) -> None:
    assert two_streams.streams(GROUP) == [(S1, 100, 500), (S2, 200, 600)]


def test_streams_track_appends(two_streams: LogStore) -> None:
    two_streams.append(GROUP, S1, [(900, "late")])
    two_streams.flush()
    assert dict((s, (a, b)) for s, a, b in two_streams.streams(GROUP))[S1] == (100, 900)


def test_streams_skip_files_without_events(store: LogStore) -> None:
    store.append(GROUP, S1, [(1, "x")])
    store.flush()
    group_dir = next(store.root.iterdir())
    (group_dir / "empty.jsonl").write_bytes(b"")
    (group_dir / "torn.jsonl").write_bytes(b'{"t": 1')
    assert store.streams(GROUP) == [(S1, 1, 1)]


@pytest.mark.parametrize("token", ["!!!", base64.urlsafe_b64encode(b"abc").decode(), "AAAA"])
def test_foreign_token_is_a_value_error(two_streams: LogStore, token: str) -> None:
    with pytest.raises(ValueError):
        two_streams.filter(GROUP, token=token)


def test_time_filter_reads_recent_streams(store: LogStore) -> None:
    # Events stamped "now" in files written now are found by a start bound just before them.
    import time

    now = int(time.time() * 1000)
    store.append(GROUP, S1, [(now - 10, "old-ish"), (now, "now")])
    store.flush()
    assert messages(store.filter(GROUP, start=now)[0]) == ["now"]
    assert messages(store.filter(GROUP, start=now + 1)[0]) == []


def test_group_names_that_are_not_file_names_are_stored_safely(tmp_path):
    store = LogStore(tmp_path / "logs")
    long_name = "/aws/lambda/" + "x" * 400
    for group in (long_name, "..", "."):
        assert not store.group_exists(group)
        store.append(group, "s", [(1, f"in {group[:5]}")])
    store.flush()
    assert set(store.groups()) >= {long_name, "..", "."}
    assert [e.message for e in store.filter(long_name)[0]] == ["in /aws/"]
    assert [e.message for e in store.filter("..")[0]] == ["in .."]
    assert not (tmp_path / "logs").parent.joinpath("s.jsonl").exists()  # nothing escaped the store
