"""``squall deploy``: package code, create or update the function, wait until it is ready.

A new function gets every setting (defaults where the user gave none). An existing one
always gets the new code, then only the settings the user gave on the command line.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from squall.cli.client import CliError
from squall.cli.output import human_size, note, step
from squall.code import package_path

DEFAULT_ROLE = "arn:aws:iam::123456789012:role/squall-function"
DEFAULT_RUNTIME = "python3.11"
DEFAULT_HANDLER = "app.handler"
WAIT_TIMEOUT = 300.0

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


def deploy_function(lam: Any, path: Path, options: DeployOptions, waiter: Waiter | None = None) -> dict[str, Any]:
    """Deploy ``path`` and return the function's settled configuration."""
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

    existing = _current(lam, name)
    current = existing or {"Runtime": DEFAULT_RUNTIME, "Handler": DEFAULT_HANDLER}
    _check_handler(code, options.runtime or current.get("Runtime", ""), options.handler or current.get("Handler", ""))
    if existing is None:
        config = _create(lam, name, code, options, waiter)
    else:
        config = _update(lam, name, code, options, existing, waiter)
    _raise_if_failed(name, config)
    return config


def _current(lam: Any, name: str) -> dict[str, Any] | None:
    try:
        return lam.get_function_configuration(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        return None


def _create(lam: Any, name: str, code: bytes, options: DeployOptions, waiter: Waiter) -> dict[str, Any]:
    params = {
        "Runtime": DEFAULT_RUNTIME,
        "Handler": DEFAULT_HANDLER,
        "Role": DEFAULT_ROLE,
        **options.settings(),
    }
    with step(f"Creating function {name}"):
        lam.create_function(FunctionName=name, Code={"ZipFile": code}, **params)
    with step(f"Waiting for {name} to become Active"):
        return waiter.wait(lam, name)


def _update(
    lam: Any, name: str, code: bytes, options: DeployOptions, existing: dict[str, Any], waiter: Waiter
) -> dict[str, Any]:
    if existing.get("State") == "Pending" or existing.get("LastUpdateStatus") == "InProgress":
        with step(f"Waiting for the previous change to {name} to finish"):
            waiter.wait(lam, name)
    with step(f"Updating code of {name}"):
        lam.update_function_code(FunctionName=name, ZipFile=code)
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
