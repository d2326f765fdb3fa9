"""``squall deploy``: package code, create or update the function, wait until it is ready.

A new function gets every setting (defaults where the user gave none). An existing one
always gets the new code, then only the settings the user gave on the command line.

The code goes in the request itself (``Code.ZipFile``) up to Lambda's 50 MB zipped; with
``--s3-bucket`` (any size, required above 50 MB) it is first uploaded to a bucket, with a
progress bar, and the function is given ``Code.S3Bucket``/``S3Key`` (``S3ObjectVersion`` on a
versioned bucket). The upload uses boto3's own credentials and endpoint (``AWS_*``); the
Squall server then reads the object from its configured S3 endpoint (``aws_endpoint``).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from squall import __version__
from squall.cli.client import CliError
from squall.cli.output import human_size, note, step
from squall.code import package_path

DEFAULT_ROLE = "arn:aws:iam::123456789012:role/squall-function"
DEFAULT_RUNTIME = "python3.11"
DEFAULT_HANDLER = "app.handler"
WAIT_TIMEOUT = 300.0
DIRECT_UPLOAD_LIMIT = 52_428_800  # Lambda's limit for Code.ZipFile (50 MB zipped)
S3_PACKAGE_LIMIT = 262_144_000  # a package through S3: Lambda's 250 MB
DEFAULT_S3_PREFIX = "squall-deploy/"

_NAME_MAX = 64
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class DeployOptions:
    """What the user asked for; ``None`` means "not given"."""

    name: str | None = None
    runtime: str | None = None
    handler: str | None = None
    memory: int | None = None
    timeout: int | None = None
    env: dict[str, str] | None = None
    role: str | None = None
    description: str | None = None

    def settings(self) -> dict[str, Any]:
        """The given options as UpdateFunctionConfiguration/CreateFunction parameters."""
        given = {
            "Runtime": self.runtime,
            "Handler": self.handler,
            "MemorySize": self.memory,
            "Timeout": self.timeout,
            "Environment": None if self.env is None else {"Variables": dict(self.env)},
            "Role": self.role,
            "Description": self.description,
        }
        return {key: value for key, value in given.items() if value is not None}


@dataclass
class Waiter:
    """Polls GetFunctionConfiguration until State and LastUpdateStatus settle."""

    timeout: float = WAIT_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    delays: tuple[float, float] = (0.05, 1.0)

    def wait(self, lam: Any, name: str) -> dict[str, Any]:
        delay, longest = self.delays
        deadline = self.clock() + self.timeout
        while True:
            config = lam.get_function_configuration(FunctionName=name)
            if config.get("State") != "Pending" and config.get("LastUpdateStatus") != "InProgress":
                return config
            if self.clock() > deadline:
                raise CliError(
                    f"{name} is still {config.get('State')} after {self.timeout:.0f} s.",
                    "Check on it later with `squall functions`.",
                )
            self.sleep(delay)
            delay = min(delay * 2, longest)


def parse_env(pairs: tuple[str, ...]) -> dict[str, str] | None:
    if not pairs:
        return None
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def function_name_for(path: Path) -> str:
    """Lambda's name rules (letters, digits, ``-``, ``_``; at most 64) applied to a path's stem."""
    stem = path.resolve().stem if path.suffix.lower() == ".zip" else path.resolve().name
    name = _NOT_NAME_CHARS.sub("-", stem).strip("-")[:_NAME_MAX]
    if not name:
        raise CliError(f"Cannot make a function name out of {str(path)!r}.", "Pass one with --name.")
    return name


def deploy_function(
    lam: Any, path: Path, options: DeployOptions, waiter: Waiter | None = None, s3: S3Upload | None = None
) -> dict[str, Any]:
    """Deploy ``path`` and return the function's settled configuration; through ``s3`` when given."""
    waiter = waiter or Waiter()
    name = options.name or function_name_for(path)
    with step(f"Packaging {path}") as packaging:
        try:
            code = package_path(path)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"Cannot package {path}: {exc}") from exc
        packaging.result = human_size(len(code))
    _check_size(len(code), s3)

    existing = _current(lam, name)
    current = existing or {"Runtime": DEFAULT_RUNTIME, "Handler": DEFAULT_HANDLER}
    _check_handler(code, options.runtime or current.get("Runtime", ""), options.handler or current.get("Handler", ""))
    source = {"ZipFile": code} if s3 is None else s3.upload(code)
    with _server_reading(s3, source):
        if existing is None:
            config = _create(lam, name, source, options, waiter)
        else:
            config = _update(lam, name, source, options, existing, waiter)
    _raise_if_failed(name, config)
    return config


def _check_size(size: int, s3: S3Upload | None) -> None:
    """Refuse, before anything is sent, a package that Lambda would refuse for its size."""
    shown = f"{human_size(size)} ({size:,} bytes)"
    if s3 is None and size > DIRECT_UPLOAD_LIMIT:
        raise CliError(
            f"The package is {shown} zipped; a direct upload is limited to 50 MB "
            f"({DIRECT_UPLOAD_LIMIT:,} bytes) zipped.",
            "Pass --s3-bucket BUCKET to upload it through S3 (a bucket the Squall server can read: its "
            "aws_endpoint setting), or move its dependencies into a layer.",
        )
    if size > S3_PACKAGE_LIMIT:
        raise CliError(
            f"The package is {shown} zipped; even through S3 a package is limited to 250 MB "
            f"({S3_PACKAGE_LIMIT:,} bytes).",
            "Move dependencies into layers (up to 250 MB unzipped together with the function).",
        )


@dataclass
class S3Upload:
    """Where ``--s3-bucket`` puts a package: ``s3://BUCKET/PREFIX<sha256>.zip``.

    boto3's own credential chain and endpoint (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``
    or AWS) are used: the store is the user's, not Squall's.
    """

    bucket: str
    prefix: str = DEFAULT_S3_PREFIX
    endpoint: str | None = None
    region: str | None = None  # used when boto3 finds none (AWS_REGION, the profile's)
    client_factory: Callable[[], Any] | None = None

    def key_for(self, code: bytes) -> str:
        return f"{self.prefix.lstrip('/')}{hashlib.sha256(code).hexdigest()}.zip"

    @property
    def where(self) -> str:
        return self.endpoint or "AWS"

    def client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory()
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        try:
            session = boto3.session.Session()
            region = session.region_name or self.region
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
            raise CliError(f"Cannot set up the S3 client: {exc}", _CREDENTIALS_HINT) from None
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=10,
            read_timeout=120,
            user_agent_extra=f"squall-cli/{__version__}",
            # S3-compatible stores (MinIO, moto, Ceph) answer on one host: no bucket subdomains
            s3={"addressing_style": "path"} if self.endpoint else {},
        )
        return session.client("s3", endpoint_url=self.endpoint, region_name=region, config=config)

    def upload(self, code: bytes) -> dict[str, str]:
        """Upload ``code`` with a progress bar on stderr; the ``Code`` that names it."""
        from boto3.s3.transfer import TransferConfig

        key = self.key_for(code)
        url = f"s3://{self.bucket}/{key}"
        with _s3_errors(self, key):
            s3 = self.client()
            note(f"Uploading {human_size(len(code))} to {url} ({self.where})")
            started = time.monotonic()
            with UploadProgress(len(code)) as progress:
                s3.upload_fileobj(
                    io.BytesIO(code), self.bucket, key,
                    ExtraArgs={"ContentType": "application/zip"},
                    Callback=progress.advance,
                    Config=TransferConfig(multipart_threshold=16 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024),
                )
            elapsed = time.monotonic() - started
            note(f"Uploaded {url} ({elapsed:.1f} s)")
            # upload_fileobj gives no response: a versioned bucket's VersionId comes from HeadObject
            version = _version_of(s3, self.bucket, key)
        source = {"S3Bucket": self.bucket, "S3Key": key}
        if version:
            source["S3ObjectVersion"] = version
        return source


def _version_of(s3: Any, bucket: str, key: str) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
    except (ClientError, BotoCoreError):  # no s3:GetObject: the latest version is what Squall reads
        return None
    return version if version and version != "null" else None


class UploadProgress:
    """Bytes uploaded of ``total`` on stderr: a bar on a terminal, a line every 25 % elsewhere
    (CI logs). ``advance`` may be called from boto3's transfer threads."""

    def __init__(self, total: int, file: Any = None) -> None:
        import click

        self.total = total
        self.done = 0
        self.file = file or click.get_text_stream("stderr")
        self._lock = threading.Lock()
        self._reported = 0  # quarters reported (not on a terminal)
        self._bar: Any = None
        if _is_terminal(self.file):
            self._bar = click.progressbar(
                length=total, file=self.file, label="  Uploading", show_eta=True, show_percent=True,
                item_show_func=lambda _: f"{human_size(self.done)} of {human_size(self.total)}",
            )

    def __enter__(self) -> UploadProgress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, sent: int) -> None:
        with self._lock:
            self.done = min(self.total, self.done + sent)
            if self._bar is not None:
                self._bar.update(sent)
                return
            quarters = 4 if self.done >= self.total else self.done * 4 // max(self.total, 1)
            if quarters > self._reported:
                self._reported = quarters
                self.file.write(f"  {quarters * 25:3d}%  {human_size(self.done)} of {human_size(self.total)}\n")
                self.file.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_CREDENTIALS_HINT = (
    "The upload uses boto3's credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
    "~/.aws/credentials), not the Squall server's."
)


@contextmanager
def _s3_errors(s3: S3Upload, key: str) -> Iterator[None]:
    """The upload's failures, each with what to do next."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
    )

    url = f"s3://{s3.bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Error")
        message = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or (code == "NotFound" and status == 404):
            raise CliError(
                f"Bucket {s3.bucket} does not exist at {s3.where}.",
                f"Create it (aws s3 mb s3://{s3.bucket}), or pass another --s3-bucket; check --s3-endpoint "
                "(AWS_ENDPOINT_URL_S3) if it lives elsewhere.",
            ) from None
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            raise CliError(
                f"Access denied: cannot upload to {url} ({s3.where}): {message}",
                "Use credentials allowed s3:PutObject on that bucket and prefix. " + _CREDENTIALS_HINT,
            ) from None
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            raise CliError(
                f"S3 at {s3.where} refuses the credentials: {code}: {message}",
                "Check them. " + _CREDENTIALS_HINT,
            ) from None
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
            raise CliError(
                f"Bucket {s3.bucket} is in another region: {code}: {message}",
                "Set AWS_REGION (or AWS_DEFAULT_REGION) to the bucket's region.",
            ) from None
        raise CliError(f"Uploading to {url} failed: {code}: {message}", _CREDENTIALS_HINT) from None
    except NoCredentialsError:
        raise CliError("No credentials for S3 were found.", _CREDENTIALS_HINT) from None
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise CliError(
            f"Cannot reach S3 at {s3.where}: {exc}",
            "Check --s3-endpoint (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) and that the store is running.",
        ) from None
    except ParamValidationError as exc:
        report = str(exc.kwargs.get("report") or exc).strip()
        first = next((line.strip() for line in report.splitlines() if line.strip()), "invalid parameters")
        first = re.split(r":\s*Bucket name must match", first)[0]  # not botocore's regular expressions
        raise CliError(f"Cannot upload to {url}: {first}.", "Check --s3-bucket and --s3-prefix.", exit_code=2) from None
    except BotoCoreError as exc:
        raise CliError(f"Uploading to {url} failed: {type(exc).__name__}: {exc}", _CREDENTIALS_HINT) from None


@contextmanager
def _server_reading(s3: S3Upload | None, source: dict[str, Any]) -> Iterator[None]:
    """When Squall cannot read the uploaded object, say which endpoint it reads from."""
    if s3 is None:
        yield
        return
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message") or ""
        if "GetObject" not in message and "reads no code from S3" not in message:
            raise
        raise CliError(
            f"{error.get('Code')}: {message}",
            f"The package was uploaded to s3://{source['S3Bucket']}/{source['S3Key']} at {s3.where}, but the "
            "Squall server reads code from its own S3 endpoint: set its aws_endpoint (SQUALL_AWS_ENDPOINT) "
            "to that store and give it credentials that may read the object (SQUALL_AWS_ACCESS_KEY_ID, "
            "SQUALL_AWS_SECRET_ACCESS_KEY).",
        ) from None


def _current(lam: Any, name: str) -> dict[str, Any] | None:
    try:
        return lam.get_function_configuration(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        return None


def _create(lam: Any, name: str, source: dict[str, Any], options: DeployOptions, waiter: Waiter) -> dict[str, Any]:
    params = {
        "Runtime": DEFAULT_RUNTIME,
        "Handler": DEFAULT_HANDLER,
        "Role": DEFAULT_ROLE,
        **options.settings(),
    }
    with step(f"Creating function {name}"):
        lam.create_function(FunctionName=name, Code=source, **params)
    with step(f"Waiting for {name} to become Active"):
        return waiter.wait(lam, name)


def _update(
    lam: Any, name: str, source: dict[str, Any], options: DeployOptions, existing: dict[str, Any], waiter: Waiter
) -> dict[str, Any]:
    if existing.get("State") == "Pending" or existing.get("LastUpdateStatus") == "InProgress":
        with step(f"Waiting for the previous change to {name} to finish"):
            waiter.wait(lam, name)
    with step(f"Updating code of {name}"):
        lam.update_function_code(FunctionName=name, **source)
    with step("Waiting for the update to finish"):
        config = waiter.wait(lam, name)
    settings = options.settings()
    if not settings or config.get("LastUpdateStatus") == "Failed":
        return config
    labels = ", ".join(_LABELS[key] for key in settings)
    with step(f"Updating configuration of {name} ({labels})"):
        lam.update_function_configuration(FunctionName=name, **settings)
    with step("Waiting for the update to finish"):
        return waiter.wait(lam, name)


_LABELS = {
    "Runtime": "runtime",
    "Handler": "handler",
    "MemorySize": "memory",
    "Timeout": "timeout",
    "Environment": "environment",
    "Role": "role",
    "Description": "description",
}


def _raise_if_failed(name: str, config: dict[str, Any]) -> None:
    if config.get("State") == "Failed":
        reason = config.get("StateReason") or "no reason given"
        code = config.get("StateReasonCode")
        raise CliError(f"{name} failed to become Active: {f'{code}: ' if code else ''}{reason}")
    if config.get("LastUpdateStatus") == "Failed":
        reason = config.get("LastUpdateStatusReason") or "no reason given"
        code = config.get("LastUpdateStatusReasonCode")
        raise CliError(f"The update of {name} failed: {f'{code}: ' if code else ''}{reason}")


def _check_handler(code: bytes, runtime: str, handler: str) -> None:
    """Warn (only) when a Python handler's module is not in the package."""
    if not runtime.startswith("python") or "." not in handler:
        return
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    try:
        names = set(zipfile.ZipFile(io.BytesIO(code)).namelist())
    except zipfile.BadZipFile:
        return  # the server explains what is wrong with the zip
    if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
        note(
            f"Warning: the package has no {module}.py, so handler {handler} will fail to import. "
            "Pass --handler MODULE.FUNCTION to name the right one."
        )
