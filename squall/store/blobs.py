"""Content-addressed code blobs on local disk, and their extracted trees.

``blobs/<sha256 hex>.zip`` holds each uploaded package once; ``code/<sha256 hex>/`` is its
extracted tree, shared by every function version with the same code. When code may be
removed is ``squall.functions.code_store``'s business, not this file's.

With a code bucket (``S3CodeBucket``, setting ``code_bucket``) the bucket holds the durable
copy of every zip, which every node can read, and ``blobs/`` is this node's cache of it:
``put`` uploads before it writes locally, ``read`` fetches (and verifies) what is not cached,
``remove_zip`` deletes the object too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from squall.code import CodeLimits, CodePackage, extract_zip, inspect_zip
from squall.errors import ServiceError

log = logging.getLogger("squall.code")


class CodeBucketError(ServiceError):
    """The code bucket could not be reached, read or written, or holds a zip that is not what
    its key says (500 ServiceException to a client; a failed start at startup)."""


class RemoteZips(Protocol):
    """Where zips live durably, by SHA-256 (blocking calls; errors are ``CodeBucketError``)."""

    def check(self) -> None: ...  # reachable and usable, or CodeBucketError
    def has(self, sha256_hex: str) -> bool: ...
    def get(self, sha256_hex: str) -> bytes | None: ...  # None: no such zip
    def put(self, sha256_hex: str, data: bytes) -> None: ...
    def delete(self, sha256_hex: str) -> None: ...
    def url(self, sha256_hex: str) -> str: ...  # for messages


def _describe(error: BaseException) -> str:
    from squall.sources.aws import describe

    return describe(error)


class S3CodeBucket:
    """Zips as objects ``s3://<bucket>/<prefix><sha256 hex>.zip`` of an S3-compatible service."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def connect(cls, bucket: str, prefix: str, endpoint: str | None, access_key_id: str | None,
                secret_access_key: str | None, region: str) -> S3CodeBucket:
        import boto3
        from botocore.config import Config

        credentials: dict[str, str] = {}
        if access_key_id and secret_access_key:
            credentials = {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        client = boto3.session.Session().client(
            "s3", region_name=region, endpoint_url=endpoint or None,
            config=Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=60,
                          max_pool_connections=32, s3={"addressing_style": "path"} if endpoint else None),
            **credentials,
        )
        return cls(client, bucket, prefix)

    def key(self, sha256_hex: str) -> str:
        return f"{self.prefix}{sha256_hex}.zip"

    def url(self, sha256_hex: str) -> str:
        return f"s3://{self.bucket}/{self.key(sha256_hex)}"

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as e:
            endpoint = self.client.meta.endpoint_url
            raise CodeBucketError(f"The code bucket {self.bucket!r} cannot be reached at {endpoint}: {_describe(e)}") from e

    def has(self, sha256_hex: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256_hex))
        except ClientError as e:
            if _missing(e):
                return False
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be read: {_describe(e)}") from e
        except BotoCoreError as e:
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be read: {_describe(e)}") from e
        return True

    def get(self, sha256_hex: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256_hex))["Body"].read()
        except ClientError as e:
            if _missing(e):
                return None
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be read: {_describe(e)}") from e
        except BotoCoreError as e:
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be read: {_describe(e)}") from e

    def put(self, sha256_hex: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(sha256_hex), Body=data,
                                   ContentType="application/zip")
        except (BotoCoreError, ClientError) as e:
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be written: {_describe(e)}") from e

    def delete(self, sha256_hex: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256_hex))
        except (BotoCoreError, ClientError) as e:
            raise CodeBucketError(f"The code bucket {self.bucket!r} could not be written: {_describe(e)}") from e


def _missing(error: Any) -> bool:
    err = error.response.get("Error", {})
    return err.get("Code") in ("404", "NoSuchKey", "NotFound") or error.response.get(
        "ResponseMetadata", {}).get("HTTPStatusCode") == 404


class BlobStore:
    def __init__(self, root: Path, remote: RemoteZips | None = None) -> None:
        self.blobs = root / "blobs"
        self.trees = root / "code"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.trees.mkdir(parents=True, exist_ok=True)
        os.chmod(self.trees, 0o755)
        # None: the local zips are the only copy. Otherwise the durable copy; blobs/ caches it.
        self.remote = remote
        # deletions of remote objects still running, by code: a later put of that code waits
        # for them, so that the old deletion cannot take away the new upload
        self._deleting: dict[str, list[threading.Thread]] = {}
        self._lock = threading.Lock()

    def blob_path(self, sha256_hex: str) -> Path:
        return self.blobs / f"{sha256_hex}.zip"

    def tree_path(self, sha256_hex: str) -> Path:
        return self.trees / sha256_hex

    def has_zip(self, sha256_hex: str) -> bool:
        """Whether the zip is stored: here, or in the code bucket (blocking)."""
        if self.blob_path(sha256_hex).exists():
            return True
        return self.remote is not None and self.remote.has(sha256_hex)

    def put(self, package: CodePackage) -> None:
        """Store the zip: in the code bucket first (if any; CodeBucketError if it cannot be
        written), then here."""
        if self.remote is not None:
            self._wait_for_deletion(package.sha256_hex)
            try:
                there = self.remote.has(package.sha256_hex)  # a zip uploaded before is not sent again
            except CodeBucketError:
                there = False  # then the upload says what is wrong
            if not there:
                self.remote.put(package.sha256_hex, package.data)
        self._write_local(package.sha256_hex, package.data)

    def _write_local(self, sha256_hex: str, data: bytes) -> None:
        path = self.blob_path(sha256_hex)
        if path.exists():
            return
        tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex}")  # two uploads of one zip must not share it
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def read(self, sha256_hex: str) -> bytes:
        """The zip; from the code bucket (then cached here) if it is not here. FileNotFoundError
        if neither has it; CodeBucketError if the bucket's object is not that zip."""
        path = self.blob_path(sha256_hex)
        if self.remote is None:
            return path.read_bytes()
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = self.remote.get(sha256_hex)
        if data is None:
            raise FileNotFoundError(f"{path} (and not in the code bucket either)")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256_hex:
            where = self.remote.url(sha256_hex)
            log.error("refusing %s from the code bucket: its SHA-256 is %s", where, actual)
            raise CodeBucketError(f"The code bucket's zip {where} is corrupt or was tampered with: its SHA-256 is "
                                  f"{actual}, not {sha256_hex}. Refusing it; upload the code again.")
        self._write_local(sha256_hex, data)
        return data

    def remove_zip(self, sha256_hex: str) -> None:
        """Remove the zip here (at once; OSError if it cannot be) and from the code bucket (in
        a background thread: a failure there is logged, and leaves an unreferenced object)."""
        self.blob_path(sha256_hex).unlink(missing_ok=True)
        if self.remote is None:
            return
        thread = threading.Thread(target=self._delete_remote, args=(sha256_hex,), daemon=True,
                                  name=f"squall-code-delete-{sha256_hex[:8]}")
        with self._lock:
            self._deleting.setdefault(sha256_hex, []).append(thread)
        thread.start()

    def _delete_remote(self, sha256_hex: str) -> None:
        try:
            assert self.remote is not None
            self.remote.delete(sha256_hex)
        except Exception as e:  # noqa: BLE001  (a thread of its own: nobody else would see it)
            log.warning("cannot remove the zip of code %s from the code bucket: %s", sha256_hex, e)
        finally:
            with self._lock:
                threads = self._deleting.get(sha256_hex, [])
                if threading.current_thread() in threads:
                    threads.remove(threading.current_thread())
                if not threads:
                    self._deleting.pop(sha256_hex, None)

    def _wait_for_deletion(self, sha256_hex: str, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._deleting.get(sha256_hex, []))
        for thread in threads:
            thread.join(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Wait (blocking, up to ``timeout`` each) for removals from the code bucket under way."""
        with self._lock:
            threads = [t for ts in self._deleting.values() for t in ts]
        for thread in threads:
            thread.join(timeout)

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
