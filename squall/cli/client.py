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
import urllib.error
import urllib.request
from contextlib import contextmanager
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
}


class CliError(click.ClickException):
    """A failure shown as ``Error: …`` plus, where useful, what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

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


def _session(region: str) -> Any:
    """A boto3 session with the user's credentials if they have any, dummy ones if not.

    Squall does not check signatures, so nobody should need AWS configuration to use
    it. The instance-metadata and container providers are left out of the chain: on a
    machine without credentials they would only add seconds of timeouts.
    """
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

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
    return boto3.session.Session(aws_access_key_id="squall", aws_secret_access_key="squall", region_name=region)


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
        raise CliError(f"Invalid request: {exc}") from exc
    except BotoCoreError as exc:
        raise CliError(f"{type(exc).__name__}: {exc}") from exc


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


def fetch_json(endpoint: str, path: str, timeout: float = 10.0, not_found_hint: str | None = None) -> dict[str, Any]:
    """GET one of Squall's own endpoints (``/health``, ``/squall/...``) as JSON."""
    url = f"{endpoint}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("Message") or str(exc)
        except ValueError:
            message = str(exc)
        raise CliError(message, not_found_hint if exc.code == 404 else None) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(
            f"Cannot reach Squall at {endpoint}.", "Start it with `squall server` or set --endpoint/SQUALL_ENDPOINT."
        ) from exc
