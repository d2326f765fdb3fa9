"""A function's code zip with its packages vendored in, as this venv has them installed.

Used by the benchmarks (bench/cold_start.py's SnapStart cases) and the tests
(tests/e2e/test_function_url_apps.py): ``app.py`` and every package the named distributions
need (their unconditional requirements, recursively), never fetched from the network. No
dist-info: nothing here reads its own distribution's metadata.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import zipfile
from importlib import metadata
from pathlib import Path

SKIPPED_DIRS = {"__pycache__", "tests", "test", "testing"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyi")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_closure(roots: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need (their unconditional requirements, recursively)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:  # ends: each distribution is expanded once, and only installed ones are
        name = _canonical(todo.pop())
        if name in found:
            continue
        found[name] = metadata.distribution(name)
        for line in found[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _top_level_names(dist: metadata.Distribution) -> set[str]:
    """The importable top-level names a distribution installed (from its RECORD)."""
    names = set()
    for file in dist.files or []:
        parts = file.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")) or parts[0] in SKIPPED_DIRS:
            continue
        if len(parts) > 1:
            names.add(parts[0])
        elif parts[0].endswith(".py") or parts[0].endswith(".so"):
            names.add(parts[0].split(".", 1)[0])
    return names


def app_zip(app: str, distributions: tuple[str, ...]) -> tuple[bytes, int, set[str]]:
    """(zip, its size unzipped, the top-level names in it): ``app`` as app.py and the packages of
    ``distributions`` and all they require."""
    files: dict[str, Path] = {}
    names: set[str] = set()
    for dist in _distribution_closure(distributions).values():
        for name in sorted(_top_level_names(dist)):
            spec = importlib.util.find_spec(name)
            assert spec is not None, f"{name} (from {dist.metadata['Name']}) is not importable here"
            names.add(name)
            if spec.submodule_search_locations:  # a package (or a namespace package's parts)
                for location in spec.submodule_search_locations:
                    root = Path(location)
                    for dirpath, dirnames, filenames in os.walk(root):
                        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
                        for filename in filenames:
                            if not filename.endswith(SKIPPED_SUFFIXES):
                                path = Path(dirpath, filename)
                                files[f"{name}/{path.relative_to(root).as_posix()}"] = path
            else:
                assert spec.origin, name
                files[Path(spec.origin).name] = Path(spec.origin)
    buffer = io.BytesIO()
    unzipped = len(app)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr, info.compress_type = 0o100644 << 16, zipfile.ZIP_DEFLATED
        zf.writestr(info, app)
        for arcname, path in sorted(files.items()):
            info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if path.suffix == ".so" else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    return buffer.getvalue(), unzipped, names
