"""Function code packages: validating, extracting and building zip files.

A function's code arrives as untrusted zip bytes (``Code.ZipFile``). Three steps:

* :func:`inspect_zip` reads only the central directory and local headers (plus the
  few bytes of each symbolic link's target) and rejects anything Lambda would reject
  or that could hurt the host: oversize packages, unsafe paths, conflicting names,
  encryption, unsupported compression, forged sizes, overlapping entries (the
  non-recursive "zip bomb" technique) and symbolic links that lead outside the
  package. It returns a :class:`CodePackage` with Lambda's ``CodeSha256``/``CodeSize``.
* :func:`extract_zip` validates again (it trusts nothing it did not check itself)
  and writes the tree into a sibling temporary directory that is renamed onto the
  destination only when complete. Decompression is done here with :mod:`zlib`
  rather than through :meth:`zipfile.ZipFile.open`, so the bytes actually produced
  are counted against the limits whatever the headers claim. Every path is opened
  relative to a directory descriptor with ``O_NOFOLLOW``; symbolic links are created
  last and checked again on disk.
* :func:`package_directory` / :func:`package_path` build a deterministic zip for
  ``squall deploy ./dir``.

Extraction relies on ``dir_fd`` support (Linux, macOS), which is where code runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from squall.errors import InvalidParameterValue, RequestEntityTooLarge

__all__ = [
    "UNZIP_ERROR",
    "CodeLimits",
    "CodePackage",
    "extract_zip",
    "inspect_zip",
    "package_directory",
    "package_path",
]

#: Lambda's message for anything that is not a readable zip file.
UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."

# Longest accepted entry name and path component (bytes, UTF-8). NAME_MAX is 255 on
# every Linux filesystem; 2048 keeps dest + name well under PATH_MAX (4096).
MAX_NAME_BYTES = 2048
MAX_COMPONENT_BYTES = 255
# Longest accepted symbolic link target (bytes).
MAX_LINK_TARGET_BYTES = 4096
# Symbolic links followed while resolving one path before giving up (Linux: 40).
_MAX_LINK_HOPS = 40

_CHUNK = 1 << 16
_DRIVE = re.compile(r"^[A-Za-z]:")
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_SKIPPED_NAMES = frozenset({"__pycache__", ".git"})
# What zipfile may raise while parsing a hostile or damaged archive.
_CORRUPT = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    ValueError,
    OSError,
    EOFError,
    struct.error,
)


@dataclass(frozen=True)
class CodeLimits:
    """Bounds applied to a code package; defaults are Lambda's.

    ``max_zipped`` / ``max_unzipped`` are Lambda's ``CodeSizeZipped`` (50 MiB direct
    upload) and ``CodeSizeUnzipped`` (250 MiB). Lambda documents no entry-count limit;
    ``max_entries`` is generous (a large ``node_modules`` has tens of thousands of
    files) and only bounds the work of reading the central directory and extracting.

    ``max_ratio`` bounds uncompressed/compressed size, both per entry and for the
    whole archive (declared sizes at inspection; bytes actually produced never exceed
    the declared ones at extraction). Deflate cannot do better than about 1032:1 —
    one 258-byte match per 2 bits, reached only by a run of a single repeated byte —
    and stored entries are 1:1. So with 1100 no honestly compressed entry can ever be
    rejected, not even a file of zeros (the most compressible content there is; large
    text files sit at 3-50:1 and repetitive JSON/CSV/logs at a few hundred), while an
    archive whose declared sizes exceed what its bytes could inflate to is either
    lying in its headers or sharing compressed data between entries, i.e. a forged
    zip bomb. Amplification by honest content is bounded by ``max_unzipped``, which
    is enforced on the bytes actually written.
    """

    max_zipped: int = 52_428_800
    max_unzipped: int = 262_144_000
    max_entries: int = 100_000
    max_ratio: int = 1_100


@dataclass(frozen=True)
class CodePackage:
    """A validated zip deployment package.

    ``sha256`` is Lambda's ``CodeSha256`` (standard base64, padded, of the SHA-256 of
    the zip bytes); ``size`` is ``CodeSize``. ``unzipped_size`` is the declared total
    of the entries (files and symbolic links); ``entries`` counts the zip's entries,
    directory entries included.
    """

    data: bytes = field(repr=False)
    sha256: str
    sha256_hex: str
    size: int
    unzipped_size: int
    entries: int


# --------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # normalised path components, never empty for files/links
    kind: str  # "file" | "dir" | "link"
    executable: bool
    data_offset: int = -1  # start of the compressed data in the archive

    @property
    def name(self) -> str:
        return self.info.orig_filename


@dataclass(frozen=True)
class _Scan:
    entries: tuple[_Entry, ...]
    dirs: frozenset[tuple[str, ...]]  # explicit and implicit directories
    links: dict[tuple[str, ...], str]  # link path -> target
    unzipped_size: int


def inspect_zip(data: bytes, limits: CodeLimits = CodeLimits()) -> CodePackage:
    """Validate a zip deployment package without extracting it.

    Raises :class:`RequestTooLarge` if the zip exceeds ``limits.max_zipped`` and
    :class:`InvalidParameterValue` for anything else that makes it unacceptable.
    An empty zip is accepted (as Lambda does); such a function fails at invocation.
    """
    data = bytes(data)
    scan = _scan(data, limits)
    digest = hashlib.sha256(data).digest()
    return CodePackage(
        data=data,
        sha256=base64.b64encode(digest).decode("ascii"),
        sha256_hex=digest.hex(),
        size=len(data),
        unzipped_size=scan.unzipped_size,
        entries=len(scan.entries),
    )


def _scan(data: bytes, limits: CodeLimits) -> _Scan:
    if len(data) > limits.max_zipped:
        raise RequestEntityTooLarge(f"Zipped size must be smaller than {limits.max_zipped} bytes. A larger package "
                                    "goes through S3 (Code.S3Bucket and S3Key), or its dependencies go into layers")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            start_dir = zf.start_dir
    except _CORRUPT:
        raise InvalidParameterValue(UNZIP_ERROR) from None
    if len(infos) > limits.max_entries:
        raise InvalidParameterValue(
            f"Zip file has too many entries ({len(infos)}); the maximum is {limits.max_entries}"
        )

    entries = [_classify(info) for info in infos]
    dirs = _check_names(entries)

    declared = sum(e.info.file_size for e in entries if e.kind != "dir")
    if declared > limits.max_unzipped:
        raise InvalidParameterValue(_unzipped_message(limits))
    for e in entries:
        if e.kind != "dir" and e.info.file_size > limits.max_ratio * e.info.compress_size:
            raise InvalidParameterValue(
                f"Invalid zip entry {e.name!r}: its compression ratio exceeds {limits.max_ratio}:1"
            )
    if declared > limits.max_ratio * len(data):
        raise InvalidParameterValue(f"Zip file compression ratio exceeds {limits.max_ratio}:1")

    entries = _locate(data, entries, start_dir)
    links = {e.parts: _read_link(data, e) for e in entries if e.kind == "link"}
    for e in entries:
        if e.kind == "link":
            _check_link(e, links)
    return _Scan(tuple(entries), frozenset(dirs), links, declared)


def _unzipped_message(limits: CodeLimits) -> str:
    return f"Unzipped size must be smaller than {limits.max_unzipped} bytes"


def _invalid_entry(name: str, reason: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid zip entry {name!r}: {reason}")


def _classify(info: zipfile.ZipInfo) -> _Entry:
    name = info.orig_filename
    if info.flag_bits & _FLAG_ENCRYPTED:
        raise _invalid_entry(name, "encrypted zip files are not supported")
    if info.compress_type not in _SUPPORTED_METHODS:
        raise _invalid_entry(
            name,
            f"compression method {info.compress_type} is not supported (use stored or deflate)",
        )
    parts = _split_name(name)
    mode = info.external_attr >> 16
    ftype = stat.S_IFMT(mode)
    if name.endswith("/") or ftype == stat.S_IFDIR:
        kind = "dir"  # whatever else its mode says: a directory is harmless
    elif ftype == stat.S_IFLNK:
        kind = "link"
    elif ftype in (0, stat.S_IFREG):
        kind = "file"
    else:
        raise _invalid_entry(
            name, "only regular files, directories and symbolic links are supported"
        )
    if kind != "dir" and not parts:
        raise _invalid_entry(name, "the path is empty")
    return _Entry(info, parts, kind, executable=bool(mode & 0o111))


def _split_name(name: str) -> tuple[str, ...]:
    """Normalised components of an entry name, or InvalidParameterValue if unsafe."""
    if "\x00" in name:
        raise _invalid_entry(name, "NUL characters are not allowed in paths")
    if "\\" in name:
        raise _invalid_entry(name, "backslashes are not allowed in paths")
    if name.startswith("/"):
        raise _invalid_entry(name, "absolute paths are not allowed")
    if _DRIVE.match(name):
        raise _invalid_entry(name, "drive letters are not allowed in paths")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise _invalid_entry(name, f"the path is longer than {MAX_NAME_BYTES} bytes")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _invalid_entry(name, "'..' path components are not allowed")
    for p in parts:
        if len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise _invalid_entry(
                name, f"a path component is longer than {MAX_COMPONENT_BYTES} bytes"
            )
    return parts


def _check_names(entries: list[_Entry]) -> set[tuple[str, ...]]:
    """Reject duplicate files/links and paths that are both a directory and not.

    Rejecting (rather than "last one wins") keeps inspection and extraction in
    agreement and makes a path below a symbolic link impossible: a link can never be
    a parent directory, so nothing is ever written through one.
    """
    dirs: dict[tuple[str, ...], str] = {(): ""}  # directory -> entry that introduced it
    others: dict[tuple[str, ...], str] = {}  # file or link -> entry name
    for e in entries:
        for i in range(len(e.parts) - (e.kind != "dir") + 1):
            prefix = e.parts[:i]
            if prefix in others:
                raise _invalid_entry(e.name, f"it needs {others[prefix]!r} to be a directory")
            dirs.setdefault(prefix, e.name)
        if e.kind == "dir":
            continue
        if e.parts in others:
            raise _invalid_entry(e.name, "the name appears more than once")
        if e.parts in dirs:
            raise _invalid_entry(e.name, f"it is also a directory (because of {dirs[e.parts]!r})")
        others[e.parts] = e.name
    return set(dirs)


def _locate(data: bytes, entries: list[_Entry], start_dir: int) -> list[_Entry]:
    """Find each entry's data through its local header; reject overlapping entries.

    Entries sharing compressed bytes are how non-recursive zip bombs reach ratios in
    the millions; a well-formed archive never does it.
    """
    by_offset = sorted(range(len(entries)), key=lambda i: entries[i].info.header_offset)
    located: list[_Entry | None] = [None] * len(entries)
    end_of_previous = 0
    for i in by_offset:
        e = entries[i]
        offset = e.info.header_offset
        if offset < end_of_previous or offset + _LOCAL_HEADER.size > start_dir:
            raise InvalidParameterValue(UNZIP_ERROR)
        fields = _LOCAL_HEADER.unpack_from(data, offset)
        magic, name_len, extra_len = fields[0], fields[9], fields[10]
        name_start = offset + _LOCAL_HEADER.size
        data_start = name_start + name_len + extra_len
        data_end = data_start + e.info.compress_size
        if magic != _LOCAL_MAGIC or data_end > start_dir:
            raise InvalidParameterValue(UNZIP_ERROR)
        # Decoded as zipfile does: by the central directory's flag.
        encoding = "utf-8" if e.info.flag_bits & _FLAG_UTF8 else "cp437"
        try:
            local_name = data[name_start : name_start + name_len].decode(encoding)
        except UnicodeDecodeError:
            raise InvalidParameterValue(UNZIP_ERROR) from None
        if local_name != e.info.orig_filename:
            raise InvalidParameterValue(UNZIP_ERROR)
        located[i] = _Entry(e.info, e.parts, e.kind, e.executable, data_start)
        end_of_previous = data_end
    return [e for e in located if e is not None]


def _inflate(data: bytes, e: _Entry) -> Iterator[bytes]:
    """Yield the entry's decompressed bytes in chunks of at most ``_CHUNK``.

    Never produces more than is available from the compressed bytes, and never
    buffers more than one chunk; the caller counts and stops. Raises
    InvalidParameterValue if the stream is damaged or does not match size and CRC.
    """
    raw = memoryview(data)[e.data_offset : e.data_offset + e.info.compress_size]
    produced = 0
    crc = 0

    def emit(chunk: bytes) -> bytes:
        nonlocal produced, crc
        produced += len(chunk)
        if produced > e.info.file_size:  # more than declared: the header lies
            raise InvalidParameterValue(UNZIP_ERROR)
        crc = zlib.crc32(chunk, crc)
        return chunk

    if e.info.compress_type == zipfile.ZIP_STORED:
        for pos in range(0, len(raw), _CHUNK):
            yield emit(bytes(raw[pos : pos + _CHUNK]))
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pos = 0
        try:
            while not inflater.eof:
                if inflater.unconsumed_tail:
                    feed = inflater.unconsumed_tail
                elif pos < len(raw):
                    feed = raw[pos : pos + _CHUNK]
                    pos += len(feed)
                else:
                    feed = b""
                out = inflater.decompress(feed, _CHUNK)
                if out:
                    yield emit(out)
                elif not feed:
                    break  # input exhausted, nothing pending: truncated stream
        except zlib.error:
            raise InvalidParameterValue(UNZIP_ERROR) from None
        if not inflater.eof:
            raise InvalidParameterValue(UNZIP_ERROR)
    if produced != e.info.file_size or crc != e.info.CRC:
        raise InvalidParameterValue(UNZIP_ERROR)


def _read_link(data: bytes, e: _Entry) -> str:
    if e.info.file_size > MAX_LINK_TARGET_BYTES:
        raise _invalid_entry(
            e.name, f"a symbolic link target is longer than {MAX_LINK_TARGET_BYTES} bytes"
        )
    raw = b"".join(_inflate(data, e))
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_entry(e.name, "the symbolic link target is not valid UTF-8") from None
    return target


def _check_link(e: _Entry, links: dict[tuple[str, ...], str]) -> None:
    target = links[e.parts]
    reason = None
    if not target or "\x00" in target:
        reason = "the symbolic link target is empty or contains NUL"
    elif target.startswith("/") or _DRIVE.match(target):
        reason = (
            f"the symbolic link target {target!r} is absolute; only relative targets are allowed"
        )
    elif "\\" in target:
        reason = f"the symbolic link target {target!r} contains a backslash"
    elif not _stays_inside(e.parts, links):
        reason = f"the symbolic link target {target!r} points outside the package"
    if reason:
        raise _invalid_entry(e.name, reason)


def _stays_inside(path: tuple[str, ...], links: dict[tuple[str, ...], str]) -> bool:
    """Resolve ``path`` in the package's own tree like the kernel would.

    Symbolic links met on the way (the path itself included) are replaced by their
    targets, so ``..`` after a link climbs from the link's target, not lexically. Only
    links in the package matter: everything else under the root is a real directory
    or file. Returns False as soon as resolution climbs above the root. A loop (too
    many hops) never leaves the root, so it is accepted and fails harmlessly (ELOOP).
    """
    pending = list(path)
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return False
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get(tuple(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return True
            if target.startswith("/") or _DRIVE.match(target) or "\\" in target:
                return False
            resolved.pop()
            pending = target.split("/") + pending
    return True


# --------------------------------------------------------------------- extraction


def extract_zip(package: CodePackage, dest: Path, limits: CodeLimits = CodeLimits()) -> None:
    """Extract ``package`` into the directory ``dest``, which must not exist yet.

    The tree is built in a temporary sibling of ``dest`` and renamed onto it when
    complete, so ``dest`` either appears whole or not at all; on any failure the
    temporary directory is removed. Files are 0o644 (0o755 if any execute bit is set
    in the entry's Unix mode), directories 0o755, independent of the umask. Raises
    InvalidParameterValue / RequestTooLarge for a bad package, FileExistsError if
    ``dest`` exists, OSError for local I/O failures (``dest``'s parent must exist).
    Concurrent extractions to the same ``dest`` must be serialised by the caller.
    Blocking: run it off the event loop.
    """
    dest = Path(dest)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} already exists")
    scan = _scan(package.data, limits)
    tmp = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        _populate(package.data, scan, tmp, limits)
        os.chmod(tmp, 0o755)
        if os.path.lexists(dest):
            raise FileExistsError(f"{dest} already exists")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _DirOpener:
    """Opens directories below a root without following symbolic links.

    Keeps only the most recently used directory open (entries are processed in
    sorted order, so consecutive ones usually share it) and closes intermediate
    descriptors, so deep trees never exhaust file descriptors.
    """

    _FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, self._FLAGS)
        self._cached: tuple[tuple[str, ...], int] | None = None

    def open(self, parts: tuple[str, ...]) -> int:
        if self._cached and self._cached[0] == parts:
            return self._cached[1]
        fd = self.root_fd
        try:
            for part in parts:
                child = os.open(part, self._FLAGS, dir_fd=fd)
                if fd != self.root_fd:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != self.root_fd:
                os.close(fd)
            raise
        self._drop()
        self._cached = (parts, fd)
        return fd

    def _drop(self) -> None:
        if self._cached and self._cached[1] != self.root_fd:
            os.close(self._cached[1])
        self._cached = None

    def close(self) -> None:
        self._drop()
        os.close(self.root_fd)


def _populate(data: bytes, scan: _Scan, root: str, limits: CodeLimits) -> None:
    opener = _DirOpener(root)
    try:
        # 1. Directories, parents first (a tuple sorts right after its prefix).
        for parts in sorted(scan.dirs):
            if not parts:
                continue
            parent = opener.open(parts[:-1])
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            fd = os.open(parts[-1], _DirOpener._FLAGS, dir_fd=parent)
            try:
                os.fchmod(fd, 0o755)
            finally:
                os.close(fd)

        # 2. Regular files, counting the bytes actually produced.
        written = 0
        files = sorted(
            (e for e in scan.entries if e.kind == "file"), key=lambda e: (e.parts[:-1], e.parts)
        )
        for e in files:
            parent = opener.open(e.parts[:-1])
            mode = 0o755 if e.executable else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(e.parts[-1], flags, mode, dir_fd=parent)
            with open(fd, "wb", closefd=True) as out:
                os.fchmod(fd, mode)
                for chunk in _inflate(data, e):
                    written += len(chunk)
                    if written > limits.max_unzipped:
                        raise InvalidParameterValue(_unzipped_message(limits))
                    out.write(chunk)

        # 3. Symbolic links, last, so nothing is ever written through one; then check
        #    what they resolve to on disk (links may point through each other).
        for e in sorted((e for e in scan.entries if e.kind == "link"), key=lambda e: e.parts):
            os.symlink(scan.links[e.parts], e.parts[-1], dir_fd=opener.open(e.parts[:-1]))
        real_root = os.path.realpath(root)
        for e in scan.entries:
            if e.kind == "link":
                real = os.path.realpath(os.path.join(root, *e.parts))
                if os.path.commonpath([real_root, real]) != real_root:
                    target = scan.links[e.parts]
                    raise _invalid_entry(
                        e.name, f"the symbolic link target {target!r} points outside the package"
                    )
    finally:
        opener.close()


# ----------------------------------------------------------------------- packaging


def package_directory(path: Path) -> bytes:
    """Zip a directory deterministically (for ``squall deploy ./dir``).

    Entries are sorted, timestamps fixed at 1980-01-01, files 0o644 or 0o755 (any
    execute bit kept), directories included (so empty ones survive) and
    ``__pycache__`` / ``.git`` skipped at any depth. A symbolic link is stored as a
    link if its target is relative and stays inside the directory; any other link,
    and special files (sockets, FIFOs, devices), raise ValueError. The same tree
    always gives the same bytes with the same zlib.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    real_root = os.path.realpath(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, full, st in _walk(root, ()):
            name = "/".join(rel)
            if stat.S_ISDIR(st.st_mode):
                info = _zip_info(name + "/", stat.S_IFDIR | 0o755)
                info.external_attr |= 0x10  # MS-DOS directory attribute
                zf.writestr(info, b"")
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                links = {rel: target}
                real = os.path.realpath(full)
                if (
                    os.path.isabs(target)
                    or not _stays_inside(rel, links)
                    or os.path.commonpath([real_root, real]) != real_root
                ):
                    raise ValueError(
                        f"{full} is a symbolic link to {target!r}, outside {root}; "
                        "replace it with a copy of what it points to"
                    )
                zf.writestr(_zip_info(name, stat.S_IFLNK | 0o777), os.fsencode(target))
            elif stat.S_ISREG(st.st_mode):
                perm = 0o755 if st.st_mode & 0o111 else 0o644
                info = _zip_info(name, stat.S_IFREG | perm, zipfile.ZIP_DEFLATED)
                info.file_size = st.st_size
                with open(full, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            else:
                raise ValueError(f"{full} is not a regular file, directory or symbolic link")
    return buf.getvalue()


_Walked = tuple[tuple[str, ...], Path, os.stat_result]


def _walk(directory: Path, rel: tuple[str, ...]) -> Iterator[_Walked]:
    with os.scandir(directory) as it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        if child.name in _SKIPPED_NAMES:
            continue
        child_rel = rel + (child.name,)
        st = child.stat(follow_symlinks=False)
        yield child_rel, Path(child.path), st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(Path(child.path), child_rel)


def _zip_info(name: str, mode: int, compress_type: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = mode << 16
    info.compress_type = compress_type
    return info


def package_path(path: Path) -> bytes:
    """The zip bytes for ``path``: a ``.zip`` file as is, or a directory packaged."""
    p = Path(path)
    if p.is_dir():
        return package_directory(p)
    if p.is_file() and p.suffix.lower() == ".zip":
        return p.read_bytes()
    if not p.exists():
        raise ValueError(f"{p} does not exist; pass a directory of function code or a .zip file")
    raise ValueError(
        f"{p} is neither a directory nor a .zip file; pass the directory holding your "
        "function code (it will be zipped) or a ready-made .zip deployment package"
    )
