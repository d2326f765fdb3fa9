"""Tests for squall.code: zip validation, safe extraction and packaging.

Hostile archives are built here, with zipfile and by patching header fields.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest

from squall.code import (
    UNZIP_ERROR,
    CodeLimits,
    CodePackage,
    extract_zip,
    inspect_zip,
    package_directory,
    package_path,
)
from squall.errors import InvalidParameterValue, RequestEntityTooLarge

# ------------------------------------------------------------------ zip builders

FILE = stat.S_IFREG | 0o644
EXE = stat.S_IFREG | 0o755
DIR = stat.S_IFDIR | 0o755
LINK = stat.S_IFLNK | 0o777


def make_zip(*entries: tuple, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, data[, unix mode]); mode None leaves external_attr at 0."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are built on purpose
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data, *rest in entries:
                mode = rest[0] if rest else FILE
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.compress_type = compression
                if mode is not None:
                    info.external_attr = mode << 16
                zf.writestr(info, data)
    return buf.getvalue()


def central_records(data: bytes) -> list[int]:
    """Offsets of the central directory records (archive without comment)."""
    cd_size, cd_offset = struct.unpack_from("<II", data, len(data) - 22 + 12)
    offsets, pos = [], cd_offset
    while pos < cd_offset + cd_size:
        offsets.append(pos)
        nlen, elen, clen = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + nlen + elen + clen
    return offsets


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def fake_sizes(data: bytes, usize: int) -> bytes:
    """Make the (single) entry claim ``usize`` uncompressed bytes, everywhere."""
    (cd,) = central_records(data)
    local = struct.unpack_from("<I", data, cd + 42)[0]
    data = patch(data, cd + 24, "<I", usize)
    return patch(data, local + 22, "<I", usize)


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty parent directory for extraction targets."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def assert_rejected(
    data: bytes, out: Path, match: str | None = None, limits: CodeLimits = CodeLimits()
) -> None:
    """Rejected by inspection, and extraction (which re-validates) leaves nothing."""
    with pytest.raises(InvalidParameterValue, match=match):
        inspect_zip(data, limits)
    fake = CodePackage(data, "x", "x", len(data), 0, 0)
    with pytest.raises(InvalidParameterValue, match=match):
        extract_zip(fake, out / "dest", limits)
    assert listing(out) == []


def assert_extraction_fails(
    data: bytes, out: Path, limits: CodeLimits = CodeLimits()
) -> InvalidParameterValue:
    pkg = inspect_zip(data, limits)
    with pytest.raises(InvalidParameterValue) as exc:
        extract_zip(pkg, out / "dest", limits)
    assert listing(out) == []
    return exc.value


# ------------------------------------------------------------------ inspection


def test_package_metadata_matches_lambda_fields():
    code = b"def handler(e, c):\n    return 1\n"
    data = make_zip(("app.py", code), ("lib/", b"", DIR), ("lib/x.txt", b"x" * 10))
    pkg = inspect_zip(data)
    digest = hashlib.sha256(data).digest()
    assert pkg.sha256 == base64.b64encode(digest).decode()
    assert len(pkg.sha256) == 44 and pkg.sha256.endswith("=")
    assert pkg.sha256_hex == digest.hex()
    assert pkg.size == len(data)
    assert pkg.entries == 3
    assert pkg.unzipped_size == len(code) + 10
    assert pkg.data == data
    assert "data" not in repr(pkg) and pkg.sha256 in repr(pkg)


def test_accepts_bytearray_and_memoryview():
    data = make_zip(("a.py", b"x"))
    assert inspect_zip(bytearray(data)).data == data
    assert inspect_zip(memoryview(data)).data == data


def test_empty_zip_is_accepted(out):
    data = make_zip()
    pkg = inspect_zip(data)
    assert (pkg.entries, pkg.unzipped_size) == (0, 0)
    extract_zip(pkg, out / "dest")
    assert listing(out / "dest") == []


@pytest.mark.parametrize(
    "data", [b"", b"hello world", b"PK\x03\x04" + b"\x00" * 100, b"\x00" * 1000]
)
def test_not_a_zip(data, out):
    assert_rejected(data, out, match=f"^{UNZIP_ERROR}$")
    with pytest.raises(InvalidParameterValue) as exc:
        inspect_zip(data)
    assert exc.value.message == UNZIP_ERROR


@pytest.mark.parametrize("cut", [1, 10, 22, 60])
def test_truncated_zip(cut, out):
    data = make_zip(("app.py", b"print('hi')\n" * 50), ("b.py", b"y" * 100))
    assert_rejected(data[:-cut], out, match="Could not unzip")


def test_truncated_at_start_is_rejected(out):
    data = make_zip(("app.py", b"print('hi')\n" * 50))
    assert_rejected(data[5:], out, match="Could not unzip")


def test_corrupt_compressed_data_fails_extraction(out):
    data = make_zip(("app.py", os.urandom(1000) + b"a" * 5000))
    (cd,) = central_records(data)
    local = struct.unpack_from("<I", data, cd + 42)[0]
    start = local + 30 + len("app.py")
    broken = bytearray(data)
    for i in range(start + 20, start + 60):
        broken[i] ^= 0xFF
    err = assert_extraction_fails(bytes(broken), out)
    assert err.message == UNZIP_ERROR


def test_zipped_size_limit():
    data = make_zip(("a.py", os.urandom(300)))
    with pytest.raises(RequestEntityTooLarge) as exc:
        inspect_zip(data, CodeLimits(max_zipped=100))
    assert exc.value.message.startswith("Zipped size must be smaller than 100 bytes. A larger package goes through S3")
    inspect_zip(data, CodeLimits(max_zipped=len(data)))  # the limit itself is allowed


def test_default_limits_are_lambdas():
    limits = CodeLimits()
    assert (limits.max_zipped, limits.max_unzipped) == (52_428_800, 262_144_000)
    assert limits.max_entries >= 100_000
    assert limits.max_ratio > 1032  # above anything deflate can honestly produce


def test_declared_unzipped_size_limit(out):
    data = make_zip(("a.txt", b"a" * 600), ("b.txt", b"b" * 600))
    message = "^Unzipped size must be smaller than 1000 bytes$"
    assert_rejected(data, out, match=message, limits=CodeLimits(max_unzipped=1000))
    inspect_zip(data, CodeLimits(max_unzipped=1200))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("/etc/x", "absolute"),
        ("//server/share/x", "absolute"),
        ("C:\\x", "backslash"),
        ("C:/x", "drive letter"),
        ("c:x", "drive letter"),
        ("..\\x", "backslash"),
        ("a\\..\\..\\x", "backslash"),
        ("a/" + "n" * 256, "longer than 255"),
        ("a/" * 1100 + "x", "longer than 2048"),
    ],
)
def test_unsafe_paths(name, reason, out, tmp_path):
    data = make_zip(("ok.py", b"ok"), (name, b"pwned"))
    with pytest.raises(InvalidParameterValue) as exc:
        inspect_zip(data)
    assert reason in exc.value.message
    assert repr(name) in exc.value.message  # the entry is named
    assert_rejected(data, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_nul_in_name_rejected(out):
    """zipfile's writer truncates at NUL, so put the byte in by hand."""
    data = make_zip(("evilX/../../x", b"pwned")).replace(b"evilX", b"evil\x00")
    assert_rejected(data, out, match="NUL")


def test_unsafe_directory_entry(out):
    assert_rejected(make_zip(("../evil/", b"", DIR)), out, match="'..'")


def test_harmless_path_spellings_are_normalised(out):
    data = make_zip(("./a.py", b"a"), ("b//c.py", b"c"), ("./", b"", DIR), ("d/./e.py", b"e"))
    extract_zip(inspect_zip(data), out / "dest")
    assert listing(out / "dest") == ["a.py", "b", "b/c.py", "d", "d/e.py"]


def test_too_many_entries(out):
    data = make_zip(*[(f"f{i}.py", b"") for i in range(6)])
    message = r"too many entries \(6\); the maximum is 5"
    assert_rejected(data, out, match=message, limits=CodeLimits(max_entries=5))
    assert inspect_zip(data, CodeLimits(max_entries=6)).entries == 6


def test_encrypted_entry(out):
    data = make_zip(("secret.py", b"x" * 100))
    (cd,) = central_records(data)
    flags = struct.unpack_from("<H", data, cd + 8)[0]
    assert_rejected(patch(data, cd + 8, "<H", flags | 1), out, match="'secret.py'.*encrypted")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_unsupported_compression(method, out):
    data = make_zip(("a.py", b"x" * 100), compression=method)
    assert_rejected(data, out, match=f"'a.py'.*compression method {method} is not supported")


def test_special_file_types_rejected(out):
    assert_rejected(make_zip(("fifo", b"", stat.S_IFIFO | 0o644)), out, match="only regular files")
    assert_rejected(make_zip(("dev", b"", stat.S_IFCHR | 0o644)), out, match="only regular files")


def test_duplicate_names_rejected(out):
    assert_rejected(make_zip(("a.py", b"1"), ("a.py", b"2")), out, match="'a.py'.*more than once")
    assert_rejected(make_zip(("a.py", b"1"), ("./a.py", b"2")), out, match="more than once")


def test_duplicate_directory_entries_are_harmless(out):
    data = make_zip(("d/", b"", DIR), ("d/", b"", DIR), ("d/x.py", b"x"))
    extract_zip(inspect_zip(data), out / "dest")
    assert listing(out / "dest") == ["d", "d/x.py"]


@pytest.mark.parametrize(
    "entries",
    [
        [("a", b"file"), ("a/b", b"x")],
        [("a/b", b"x"), ("a", b"file")],
        [("a", b"file"), ("a/", b"", DIR)],
        [("a/", b"", DIR), ("a", b"file")],
    ],
)
def test_file_directory_conflicts_rejected(entries, out):
    assert_rejected(make_zip(*entries), out, match="Invalid zip entry")


# ------------------------------------------------------------------ bombs and lies


def test_declared_size_lies_small(out):
    """Central directory claims 10 bytes; the stream inflates to 2 MB."""
    data = fake_sizes(make_zip(("big.bin", b"\x00" * 2_000_000)), 10)
    limits = CodeLimits(max_unzipped=1000)
    pkg = inspect_zip(data, limits)  # the headers alone look harmless
    assert pkg.unzipped_size == 10
    err = assert_extraction_fails(data, out, limits)
    assert err.message in (UNZIP_ERROR, "Unzipped size must be smaller than 1000 bytes")


def test_declared_size_lies_large(out):
    """Claims more than the stream holds: a truncated file must not be accepted."""
    data = fake_sizes(make_zip(("a.bin", b"\x00" * 1000)), 5000)
    assert assert_extraction_fails(data, out).message == UNZIP_ERROR


def test_wrong_crc_fails_extraction(out):
    data = make_zip(("a.py", b"print(1)\n"))
    (cd,) = central_records(data)
    assert assert_extraction_fails(patch(data, cd + 16, "<I", 12345), out).message == UNZIP_ERROR


def test_high_ratio_entry_rejected(out):
    data = make_zip(("zeros.bin", b"\x00" * 1_000_000))
    message = "'zeros.bin'.*compression ratio exceeds 100:1"
    assert_rejected(data, out, match=message, limits=CodeLimits(max_ratio=100))


def test_most_compressible_content_passes_default_ratio(out):
    """A file of zeros is the best deflate can do (~1030:1): never rejected by default."""
    data = make_zip(("zeros.bin", b"\x00" * 4_000_000), ("x.json", b'{"k": "v"}' * 100_000))
    pkg = inspect_zip(data)
    assert pkg.unzipped_size / pkg.size > 500
    extract_zip(pkg, out / "dest")
    assert (out / "dest" / "zeros.bin").stat().st_size == 4_000_000


def test_forged_ratio_rejected(out):
    """Claims far more than deflate could produce from its bytes."""
    data = fake_sizes(make_zip(("a.bin", b"\x00" * 10_000)), 50_000_000)
    assert_rejected(data, out, match="compression ratio exceeds")


def test_overlapping_entries_bomb_rejected(out):
    """Many central directory records sharing one compressed stream."""
    data = make_zip(("a", b"\x00" * 100_000))
    (cd,) = central_records(data)
    record = data[cd : cd + 46 + 1]
    assert record.endswith(b"a")
    # The first record is the genuine one; the copies differ only by name.
    records = [record] + [record[:-1] + bytes([ord("b") + i]) for i in range(20)]
    eocd = bytearray(data[-22:])
    struct.pack_into("<HHI", eocd, 8, len(records), len(records), len(record) * len(records))
    bomb = data[:cd] + b"".join(records) + bytes(eocd)
    # 21 x 100 kB declared from ~1.5 kB of zip: no honest archive gets there.
    assert_rejected(bomb, out, match=r"^Zip file compression ratio exceeds 1100:1$")
    # Without the ratio bound, the shared data itself is refused.
    assert_rejected(bomb, out, match=UNZIP_ERROR, limits=CodeLimits(max_ratio=10**9))


def test_quoted_overlap_rejected(out):
    """Fifield-style: entry a's compressed span swallows entry b's header and data.

    Names, sizes and ratio all look fine; only the overlap gives it away.
    """
    data = make_zip(("a", b"A" * 1000), ("b", b"B" * 1000))
    cd_a, cd_b = central_records(data)
    a_size = struct.unpack_from("<I", data, cd_a + 20)[0]
    b_offset = struct.unpack_from("<I", data, cd_b + 42)[0]
    b_size = struct.unpack_from("<I", data, cd_b + 20)[0]
    a_data = 30 + 1
    swallowed = b_offset + 30 + 1 + b_size - a_data
    assert swallowed > a_size
    bomb = patch(data, cd_a + 20, "<I", swallowed)
    assert_rejected(bomb, out, match=UNZIP_ERROR)


def test_local_header_name_mismatch_rejected(out):
    data = make_zip(("good.py", b"x"))
    (cd,) = central_records(data)
    local = struct.unpack_from("<I", data, cd + 42)[0]
    bad = data[: local + 30] + b"evil.py" + data[local + 30 + 7 :]
    assert_rejected(bad, out, match=UNZIP_ERROR)


# ------------------------------------------------------------------ symbolic links


@pytest.mark.parametrize(
    "entries, needle",
    [
        ([("link", b"/etc", LINK)], "absolute"),
        ([("link", b"../../x", LINK)], "outside"),
        ([("a/link", b"../../x", LINK)], "outside"),
        ([("a/link", b"../b/../../x", LINK)], "outside"),
        ([("link", b"C:\\Windows", LINK)], "absolute"),
        ([("link", b"..\\x", LINK)], "backslash"),
        ([("link", b"", LINK)], "empty"),
        # Lexically inside, physically outside: l1 -> . then l1/.. is dest's parent.
        ([("l1", b".", LINK), ("l2", b"l1/../escape", LINK)], "outside"),
        ([("d/", b"", DIR), ("d/up", b"..", LINK), ("l", b"d/up/../x", LINK)], "outside"),
    ],
)
def test_escaping_symlinks_rejected(entries, needle, out, tmp_path):
    assert_rejected(make_zip(("app.py", b"x"), *entries), out)
    with pytest.raises(InvalidParameterValue) as exc:
        inspect_zip(make_zip(*entries))
    assert needle in exc.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("target", [b"/etc", b"../outside", b"sub"])
def test_symlink_then_file_through_it(target, out, tmp_path):
    (tmp_path / "outside").mkdir()
    data = make_zip(("sub/", b"", DIR), ("link", target, LINK), ("link/passwd", b"pwned"))
    assert_rejected(data, out, match="Invalid zip entry")
    assert list((tmp_path / "outside").iterdir()) == []


def test_in_tree_symlinks_work(out):
    data = make_zip(
        ("lib/real.py", b"X = 1\n"),
        ("lib/deep/", b"", DIR),
        ("alias.py", b"lib/real.py", LINK),
        ("libdir", b"lib", LINK),
        ("lib/deep/up.py", b"../real.py", LINK),
        ("dangling", b"nowhere/yet", LINK),
        ("loop", b"loop", LINK),
    )
    pkg = inspect_zip(data)
    dest = out / "dest"
    extract_zip(pkg, dest)
    assert os.readlink(dest / "alias.py") == "lib/real.py"
    assert (dest / "alias.py").read_bytes() == b"X = 1\n"
    assert (dest / "libdir" / "real.py").read_bytes() == b"X = 1\n"
    assert (dest / "lib" / "deep" / "up.py").read_bytes() == b"X = 1\n"
    assert (dest / "dangling").is_symlink() and not (dest / "dangling").exists()
    assert (dest / "loop").is_symlink()


def test_symlink_backstop_on_disk(out, tmp_path, monkeypatch):
    """Even if the in-memory resolution missed an escape, extraction checks on disk."""
    import squall.code

    monkeypatch.setattr(squall.code, "_stays_inside", lambda path, links: True)
    for i, entries in enumerate(
        [
            [("up", b"../../x", LINK)],
            [("l1", b".", LINK), ("l2", b"l1/../escape", LINK)],
        ]
    ):
        data = make_zip(("app.py", b"x"), *entries)
        pkg = inspect_zip(data)  # fooled
        with pytest.raises(InvalidParameterValue, match="points outside the package"):
            extract_zip(pkg, out / f"dest{i}")
        assert listing(out) == []


def test_actual_bytes_are_counted(out, monkeypatch):
    """The writer enforces max_unzipped itself, not only through declared sizes."""
    import squall.code

    real_scan = squall.code._scan
    monkeypatch.setattr(squall.code, "_scan", lambda data, limits: real_scan(data, CodeLimits()))
    data = make_zip(("a.bin", b"a" * 3000), ("b.bin", b"b" * 3000))
    pkg = inspect_zip(data)
    message = "^Unzipped size must be smaller than 4000 bytes$"
    with pytest.raises(InvalidParameterValue, match=message):
        extract_zip(pkg, out / "dest", CodeLimits(max_unzipped=4000))
    assert listing(out) == []


# ------------------------------------------------------------------ extraction


def test_modes_and_exec_bit(out):
    data = make_zip(
        ("bootstrap", b"#!/bin/sh\necho hi\n", EXE),
        ("tool", b"x", stat.S_IFREG | 0o700),
        ("private.txt", b"x", stat.S_IFREG | 0o600),
        ("windows.txt", b"x", None),  # no Unix mode at all
        ("d/", b"", stat.S_IFDIR | 0o700),
        ("implicit/child.py", b"x", FILE),
    )
    old = os.umask(0o077)
    try:
        extract_zip(inspect_zip(data), out / "dest")
    finally:
        os.umask(old)
    dest = out / "dest"

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.lstat().st_mode)

    assert mode(dest) == 0o755
    assert mode(dest / "bootstrap") == 0o755
    assert os.access(dest / "bootstrap", os.X_OK)
    assert mode(dest / "tool") == 0o755
    assert mode(dest / "private.txt") == 0o644
    assert mode(dest / "windows.txt") == 0o644
    assert mode(dest / "d") == 0o755
    assert mode(dest / "implicit") == 0o755
    assert mode(dest / "implicit" / "child.py") == 0o644


def test_content_round_trip_stored_and_deflated(out):
    payload = os.urandom(200_000) + b"text" * 50_000
    for i, method in enumerate([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]):
        data = make_zip(("a/b/c.bin", payload), ("empty.txt", b""), compression=method)
        extract_zip(inspect_zip(data), out / f"dest{i}")
        assert (out / f"dest{i}" / "a" / "b" / "c.bin").read_bytes() == payload
        assert (out / f"dest{i}" / "empty.txt").read_bytes() == b""


def test_streamed_zip_with_data_descriptors(out):
    """Zips written to a pipe carry sizes after the data (flag bit 3)."""

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.buf += b
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.py", b"print(1)\n" * 100)
        zf.writestr("b/c.py", b"x")
    data = bytes(pipe.buf)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(i.flag_bits & 0x8 for i in zf.infolist())
    extract_zip(inspect_zip(data), out / "dest")
    assert (out / "dest" / "a.py").read_bytes() == b"print(1)\n" * 100
    assert (out / "dest" / "b" / "c.py").read_bytes() == b"x"


def test_explicit_and_implicit_directories(out):
    data = make_zip(
        ("empty/", b"", DIR), ("x/y/z.py", b"z"), ("x/", b"", DIR), ("dirmode", b"", DIR)
    )
    extract_zip(inspect_zip(data), out / "dest")
    assert listing(out / "dest") == ["dirmode", "empty", "x", "x/y", "x/y/z.py"]
    assert (out / "dest" / "dirmode").is_dir()


def test_dest_must_not_exist(out):
    pkg = inspect_zip(make_zip(("a.py", b"x")))
    (out / "dest").mkdir()
    (out / "dest" / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_zip(pkg, out / "dest")
    assert listing(out) == ["dest", "dest/keep"]


def test_failed_extraction_leaves_nothing(out):
    """The failure happens after files were already written to the temporary tree."""
    good = [(f"f{i}.py", b"x" * 1000) for i in range(5)]
    data = make_zip(*good, ("zz/bad.bin", b"\x00" * 10_000))
    (cd,) = central_records(data)[-1:]
    data = patch(data, cd + 16, "<I", 0)  # wrong CRC on the last file
    assert_extraction_fails(data, out)
    assert not (out / "dest").exists()


def test_extraction_is_repeatable_into_fresh_dirs(out):
    pkg = inspect_zip(make_zip(("a.py", b"1")))
    extract_zip(pkg, out / "one")
    extract_zip(pkg, out / "two")
    assert listing(out) == ["one", "one/a.py", "two", "two/a.py"]


def test_deep_tree_does_not_exhaust_descriptors(out):
    name = "/".join(["d"] * 600) + "/leaf.py"
    extract_zip(inspect_zip(make_zip((name, b"x"))), out / "dest")
    assert (out / "dest" / name).read_bytes() == b"x"


# ------------------------------------------------------------------ packaging


def make_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "app.py").write_text("def handler(e, c):\n    return e\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "data.json").write_bytes(b'{"a": 1}' * 1000)
    (root / "bootstrap").write_text("#!/bin/sh\nexec python3 app.py\n")
    (root / "bootstrap").chmod(0o755)
    (root / "empty").mkdir()
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "link.py").symlink_to("app.py")
    (root / "pkglink").symlink_to("pkg/sub")
    (root / "ünïcode.txt").write_text("ok")
    return root


def test_package_directory_round_trip(tmp_path, out):
    src = make_tree(tmp_path / "src")
    data = package_directory(src)
    pkg = inspect_zip(data)
    dest = out / "dest"
    extract_zip(pkg, dest)
    assert listing(dest) == [
        "app.py",
        "bootstrap",
        "empty",
        "link.py",
        "pkg",
        "pkg/__init__.py",
        "pkg/sub",
        "pkg/sub/data.json",
        "pkglink",
        "ünïcode.txt",
    ]
    assert (dest / "pkg" / "sub" / "data.json").read_bytes() == b'{"a": 1}' * 1000
    assert stat.S_IMODE((dest / "bootstrap").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "app.py").stat().st_mode) == 0o644
    assert os.readlink(dest / "link.py") == "app.py"
    assert os.readlink(dest / "pkglink") == "pkg/sub"
    assert (dest / "pkglink" / "data.json").exists()


def test_package_directory_is_deterministic(tmp_path):
    src = make_tree(tmp_path / "src")
    first = package_directory(src)
    os.utime(src / "app.py", (1_700_000_000, 1_700_000_000))
    os.utime(src / "pkg", (1_600_000_000, 1_600_000_000))
    (src / "app.py").chmod(0o600)  # permissions other than the exec bit don't matter
    assert package_directory(src) == first
    # A second, identical tree elsewhere gives identical bytes too.
    assert package_directory(make_tree(tmp_path / "other")) == first
    (src / "app.py").chmod(0o700)
    assert package_directory(src) != first


def test_package_directory_zip_layout(tmp_path):
    src = make_tree(tmp_path / "src")
    with zipfile.ZipFile(io.BytesIO(package_directory(src))) as zf:
        names = zf.namelist()
        assert not any("__pycache__" in n or ".git" in n for n in names)
        assert "empty/" in names
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert zf.testzip() is None


def test_package_directory_rejects_escaping_symlink(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x")
    (src / "abs").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="symbolic link"):
        package_directory(src)
    (src / "abs").unlink()
    (src / "rel").symlink_to("../elsewhere")
    with pytest.raises(ValueError, match="outside"):
        package_directory(src)


def test_package_directory_rejects_fifo(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(ValueError, match="not a regular file"):
        package_directory(src)


def test_package_directory_requires_directory(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        package_directory(tmp_path / "missing")


def test_package_path(tmp_path):
    src = make_tree(tmp_path / "src")
    assert package_path(src) == package_directory(src)

    zipped = tmp_path / "fn.ZIP"
    raw = make_zip(("a.py", b"x"))
    zipped.write_bytes(raw)
    assert package_path(zipped) == raw

    other = tmp_path / "app.py"
    other.write_text("x")
    with pytest.raises(ValueError, match="neither a directory nor a .zip file"):
        package_path(other)
    with pytest.raises(ValueError, match="does not exist"):
        package_path(tmp_path / "nope")


def test_zlib_stream_helper_sanity():
    """The builder really produces raw deflate data the helpers can locate."""
    data = make_zip(("a", b"hello"))
    (cd,) = central_records(data)
    local = struct.unpack_from("<I", data, cd + 42)[0]
    csize = struct.unpack_from("<I", data, cd + 20)[0]
    start = local + 30 + 1
    assert zlib.decompress(data[start : start + csize], -15) == b"hello"
