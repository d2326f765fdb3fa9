"""Request ids (squall/api/app.py: RequestIds): UUID version 4 text, unique."""

from __future__ import annotations

import uuid

from squall.api.app import RequestIds


def test_ids_are_version_4_uuids_in_canonical_form():
    ids = RequestIds()
    for _ in range(2000):
        text = ids.next()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat_and_generators_differ():
    a, b = RequestIds(), RequestIds()
    drawn = {a.next() for _ in range(20000)} | {b.next() for _ in range(20000)}
    assert len(drawn) == 40000


def test_a_seed_makes_them_reproducible():
    assert [RequestIds(7).next() for _ in range(2)] == [RequestIds(7).next()] * 2
    first = RequestIds(7)
    assert first.next() != first.next()
