"""Ephemeral storage: /tmp disks made from sparse templates, handed out as mount fds."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from squall.sandbox.linux.ephemeral import EphemeralDisks, EphemeralUnavailable, _sparse_copy, image_bytes
from tests.conftest import require


def test_an_image_holds_its_size_in_files():
    assert image_bytes(512) == (512 + 8 + 2) << 20
    assert image_bytes(1) == (1 + 1 + 2) << 20  # metadata rounds up


def test_a_sparse_copy_keeps_data_and_holes(tmp_path):
    source = tmp_path / "source"
    with open(source, "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"a" * 4096)
        f.seek(40 << 20)
        f.write(b"b" * 8192)
    fd = _sparse_copy(source, tmp_path / "copy")
    os.close(fd)
    copy = tmp_path / "copy"
    assert copy.read_bytes() == source.read_bytes()
    assert os.stat(copy).st_blocks * 512 <= 1 << 20  # the holes stay holes


def _disks_or_skip(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("loop devices and mounts need root")
    try:
        return EphemeralDisks.set_up(tmp_path / "ephemeral")
    except EphemeralUnavailable as e:
        require(False, f"ephemeral disks unavailable: {e}")


def test_disks_are_made_ahead_for_the_sizes_in_use(tmp_path):
    disks = _disks_or_skip(tmp_path)

    async def scenario():
        fds = [await disks.take(64)]  # made now (no template yet for 64 MB)
        assert disks._ready[64] == []
        disks.refill()  # once the start is over: the next one is made ahead, on the disk thread
        for _ in range(20):
            if disks._ready.get(64):
                break
            await asyncio.sleep(0.05)
        assert len(disks._ready[64]) == 1
        fds.append(await disks.take(64))  # a ready one
        for size in (16, 32, 48):  # only the three most recent sizes keep a disk ready
            fds.append(await disks.take(size))
            disks.refill()
        await asyncio.sleep(0.5)
        assert 64 not in disks._ready and set(disks._ready) == {16, 32, 48}
        assert len({os.fstat(fd).st_dev for fd in fds}) == len(fds)  # a filesystem each
        for fd in fds:
            os.close(fd)

    try:
        asyncio.run(scenario())
    finally:
        disks.close()
    assert not list((tmp_path / "ephemeral").glob("env-*"))  # copies are unlinked at once
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "ephemeral").glob("template-*")) == [
        "16m", "32m", "48m", "512m", "64m"]


def test_without_e2fsprogs_there_are_no_disks(tmp_path, monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "mkfs.ext4" else real(tool))
    with pytest.raises(EphemeralUnavailable, match="apt install e2fsprogs"):
        EphemeralDisks.set_up(tmp_path)
