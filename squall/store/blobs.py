"""Content-addressed code blobs on local disk, and their extracted trees.

``blobs/<sha256 hex>.zip`` holds each uploaded package once; ``code/<sha256 hex>/`` is its
extracted tree, shared by every function version with the same code. When code may be
removed is ``squall.functions.code_store``'s business, not this file's.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

from squall.code import CodeLimits, CodePackage, extract_zip, inspect_zip


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.blobs = root / "blobs"
        self.trees = root / "code"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.trees.mkdir(parents=True, exist_ok=True)
        os.chmod(self.trees, 0o755)

    def blob_path(self, sha256_hex: str) -> Path:
        return self.blobs / f"{sha256_hex}.zip"

    def tree_path(self, sha256_hex: str) -> Path:
        return self.trees / sha256_hex

    def put(self, package: CodePackage) -> None:
        path = self.blob_path(package.sha256_hex)
        if path.exists():
            return
        tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex}")  # two uploads of one zip must not share it
        with open(tmp, "wb") as fh:
            fh.write(package.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def read(self, sha256_hex: str) -> bytes:
        return self.blob_path(sha256_hex).read_bytes()

    def extract(self, package: CodePackage) -> Path:
        """Extract the package once; later calls return the existing tree."""
        tree = self.tree_path(package.sha256_hex)
        if not tree.exists():
            # the zipped limit was the upload's business (50 MB direct, 250 MB from S3): not checked again
            limits = dataclasses.replace(CodeLimits(), max_zipped=max(CodeLimits().max_zipped, package.size))
            try:
                extract_zip(package, tree, limits)
            except FileExistsError:
                pass  # another upload of the same package got there first: same content
        return tree

    def ensure_tree(self, sha256_hex: str) -> Path:
        tree = self.tree_path(sha256_hex)
        if not tree.exists():
            data = self.read(sha256_hex)
            limits = dataclasses.replace(CodeLimits(), max_zipped=max(CodeLimits().max_zipped, len(data)))
            return self.extract(inspect_zip(data, limits))
        return tree
