"""How CLI commands reach a Squall server: boto3 clients and their errors.

Every command talks to the server only through the AWS APIs it serves (Lambda, and the
CloudWatch Logs subset), with the same clients a user's own code would use.
:func:`api_command` gives a command the ``--endpoint``/``--region`` options and a
:class:`Connection`, and turns every botocore failure into one line a person can act
on (no tracebacks).
"""

from __future__ import annotations

import functools
import json
import os
import re
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from squall import __version__

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
DEFAULT_REGION = "us-east-1"
# Long enough for a function running to Lambda's 900 s maximum timeout.
READ_TIMEOUT = 910

# What to do next, by Lambda error code.
_HINTS = {
    "ResourceNotFoundException": "See your functions with `squall functions`.",
    "ResourceConflictException": "Another change to this function is in progress; try again in a moment.",
    "TooManyRequestsException": "Squall is at its concurrency limit; try again shortly.",
    "RequestEntityTooLargeException": "Direct uploads are limited to 50 MB zipped.",
    "UnrecognizedClientException": "Squall does not know this access key. The CLI uses the server's administrator key "
                                   "from <data dir>/credentials: run it as the user who runs the server, set "
                                   "SQUALL_DATA_DIR to the server's data dir, or export what `squall credentials` prints.",
    "InvalidSignatureException": "The secret key does not match the access key (or the clock is off by more than "
                                 "5 minutes): use the server's credentials (`squall credentials`).",
    "AccessDeniedException": "Your identity's policies do not allow this; ask the administrator (`aws iam "
                             "put-user-policy`).",
}


class CliError(click.ClickException):
    """A failure shown as ``Error: …`` plus, where useful, what to do next."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # 2: the command line itself is wrong (click's usage errors)

    def format_message(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class Connection:
    """Lazily created boto3 clients for one endpoint and region."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = normalise_endpoint(endpoint)
        self.region = region
        self._clients: dict[str, Any] = {}

    @property
    def lam(self) -> Any:
        return self._client("lambda")

    @property
    def logs(self) -> Any:
        return self._client("logs")

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            self._clients[service] = _session(self.region).client(
                service,
                endpoint_url=self.endpoint,
                config=Config(
                    # No retries: an invoke is not idempotent, a refused connection is
                    # not transient, and throttling is worth telling the user about.
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=5,
                    read_timeout=READ_TIMEOUT,
                    user_agent_extra=f"squall-cli/{__version__}",
                ),
            )
        return self._clients[service]


def normalise_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def data_dir() -> Path:
    """Where the local server keeps its data (and its administrator's credentials)."""
    from squall.settings import default_data_dir

    configured = os.environ.get("SQUALL_DATA_DIR")
    return Path(configured).expanduser() if configured else default_data_dir()


def _session(region: str) -> Any:
    """A boto3 session with the credentials to use against Squall.

    In order: credentials given explicitly in the environment (``AWS_ACCESS_KEY_ID``,
    ``AWS_PROFILE``); the local server's administrator key (``<data dir>/credentials``,
    written by ``squall server``); anything else boto3 finds. The instance-metadata and
    container providers are left out: on a machine without them they only add timeouts.
    """
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

    from squall.auth import credentials_file

    explicit = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
    if not explicit:
        admin = credentials_file.read(data_dir())
        if admin is not None:
            return boto3.session.Session(aws_access_key_id=admin[0], aws_secret_access_key=admin[1], region_name=region)
    try:
        core = botocore.session.Session()
        resolver = core.get_component("credential_provider")
        for provider in ("container-role", "iam-role"):
            if resolver.get_provider(provider) is not None:
                resolver.remove(provider)
        session = boto3.session.Session(botocore_session=core, region_name=region)
        if session.get_credentials() is not None:
            return session
    except BotoCoreError:  # e.g. AWS_PROFILE names a profile that does not exist
        pass
    # nothing found: the server refuses this key, and the hint for UnrecognizedClientException says what to do
    return boto3.session.Session(aws_access_key_id="none", aws_secret_access_key="none", region_name=region)


@contextmanager
def server_errors(endpoint: str) -> Iterator[None]:
    """Turn botocore's exceptions into :class:`CliError`."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ParamValidationError,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Error"
        message = error.get("Message") or str(exc)
        usage = _usage_error(code, message, endpoint)
        if usage is not None:
            raise usage from None
        raise CliError(f"{code}: {message}", _HINTS.get(code)) from None
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise CliError(
            f"Cannot reach Squall at {endpoint}.",
            "Start it with `squall server` or set --endpoint/SQUALL_ENDPOINT.",
        ) from exc
    except ConnectionClosedError as exc:
        raise CliError(f"Squall at {endpoint} closed the connection.", "Check the server's output.") from exc
    except ReadTimeoutError as exc:
        raise CliError(f"Squall at {endpoint} did not answer within {READ_TIMEOUT} s.") from exc
    except ParamValidationError as exc:
        raise param_validation_error(exc) from None
    except BotoCoreError as exc:
        raise CliError(f"{type(exc).__name__}: {exc}") from exc


def param_validation_error(exc: Exception) -> CliError:
    """botocore's client-side ParamValidationError, shortened to its first problem (not the
    enum or the regular expression it goes on to quote); a usage error (exit 2)."""
    report = str(getattr(exc, "kwargs", {}).get("report") or exc).strip()
    first = next((line.strip() for line in report.splitlines() if line.strip()), "invalid parameters")
    first = re.split(r",? (?:valid values|valid min length|valid max length|valid pattern|valid types)", first, 1)[0]
    return CliError(f"Invalid request: {first.rstrip(':,')}.", exit_code=2)


_FUNCTION_NAME_PATTERN = re.compile(r"at '(?:functionName|FunctionName)' failed to satisfy constraint")
_RUNTIME_ENUM = re.compile(r"Value (\S+) at 'runtime' failed to satisfy constraint: Member must satisfy enum value set")


def _usage_error(code: str, message: str, endpoint: str) -> CliError | None:
    """The server's validation errors that quote a whole regular expression or enum, said
    as a person would (exit 2); None for every other error."""
    from squall.cli.names import NAME_RULES, offered_runtimes, runtime_problem

    if code in ("ValidationException", "InvalidParameterValueException") and _FUNCTION_NAME_PATTERN.search(message):
        value = re.search(r"Value '(.*?)' at", message)
        shown = f"{value.group(1)!r} is not a function name" if value else "Not a function name"
        return CliError(f"{shown}: {NAME_RULES}.", exit_code=2)
    runtime = _RUNTIME_ENUM.search(message)
    if code == "InvalidParameterValueException" and runtime:
        problem = runtime_problem(runtime.group(1), offered_runtimes(endpoint))
        if problem:
            return CliError(problem[0].upper() + problem[1:] + ".", exit_code=2)
        return CliError(f"Unknown runtime {runtime.group(1)!r}.", "See the runtimes offered with `squall runtimes`.",
                        exit_code=2)
    return None


def api_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--endpoint``/``--region`` to a command and pass it a :class:`Connection`."""

    @click.option(
        "--endpoint",
        envvar="SQUALL_ENDPOINT",
        show_envvar=True,
        default=DEFAULT_ENDPOINT,
        show_default=True,
        help="URL of the Squall server.",
    )
    @click.option(
        "--region",
        envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
        show_envvar=True,
        default=DEFAULT_REGION,
        show_default=True,
        help="Region for ARNs and request signing.",
    )
    @functools.wraps(fn)
    def command(endpoint: str, region: str, **kwargs: Any) -> Any:
        connection = Connection(endpoint, region)
        with server_errors(connection.endpoint):
            return fn(connection, **kwargs)

    return command


def fetch_json(endpoint: str, path: str, timeout: float = 10.0, not_found_hint: str | None = None,
               region: str | None = None) -> dict[str, Any]:
    """GET one of Squall's own endpoints (``/health``, ``/squall/...``) as JSON; signed
    (SigV4, as the Lambda API) when ``region`` is given."""
    return call_json(endpoint, "GET", path, timeout=timeout, region=region, not_found_hint=not_found_hint)


def call_json(endpoint: str, method: str, path: str, document: Any = None, timeout: float = 10.0,
              region: str | None = None, not_found_hint: str | None = None, refused: str = "",
              refused_hint: str | None = None) -> dict[str, Any]:
    """One request to Squall's own endpoints with a JSON body (``document``) and answer; signed
    (SigV4, as the Lambda API, with the CLI's credentials) when ``region`` is given. A refusal is a
    CliError: ``refused`` + the server's message, with ``refused_hint`` (a 404: ``not_found_hint``)."""
    url = f"{endpoint}{path}"
    body = None if document is None else json.dumps(document).encode()
    headers: dict[str, str] = {"Content-Type": "application/json"} if body is not None else {}
    if region is not None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        signed = AWSRequest(method=method, url=url, data=body, headers=headers)
        credentials = _session(region).get_credentials()
        if credentials is not None:
            SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(signed)
        headers = dict(signed.headers.items())
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
            message = answer.get("Message") or answer.get("message") or str(exc)
        except ValueError:
            message = str(exc)
        raise CliError(refused + message, not_found_hint if exc.code == 404 else refused_hint) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(
            f"Cannot reach Squall at {endpoint}.", "Start it with `squall server` or set --endpoint/SQUALL_ENDPOINT."
        ) from exc


def snapshots_by_function(connection: Connection) -> dict[str, str]:
    """Each function's SnapStart snapshots on the server, as ``version:memory``, from /health."""
    try:
        report = fetch_json(connection.endpoint, "/health").get("snapshots") or {}
    except Exception:  # an older server, or /health refused: the column says "-"
        return {}
    found: dict[str, list[str]] = {}
    for snapshot in report.get("snapshots") or []:
        found.setdefault(snapshot["function"], []).append(
            f"{snapshot['version']}:{snapshot['memory_mb']:.0f}MB ({snapshot['state']})")
    return {name: ", ".join(items) for name, items in found.items()}
