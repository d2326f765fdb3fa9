"""Checks of what a user types before it goes to boto3: function names and runtimes.

A bad value is a usage error (exit 2) with a sentence a person can act on, instead of
botocore's (or the server's) regular expression or enum.
"""

from __future__ import annotations

import re
from typing import Any

import click

NAME_RULES = "a function name has only letters, digits, hyphens and underscores, up to 64 characters (or is a function ARN)"

# Lambda's own pattern, less the oddities: NAME, NAME:QUALIFIER, 123456789012:function:NAME,
# arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER].
_QUALIFIER = r"(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))"
_FUNCTION = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d:\d{12}:function:|\d{12}:function:)?"
    r"(?P<name>[A-Za-z0-9_-]{1,64})" + _QUALIFIER + "?"
)
_UNQUALIFIED = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d:\d{12}:function:|\d{12}:function:)?"
    r"[A-Za-z0-9_-]{1,64}"
)


def name_problem(name: str, qualified: bool = True) -> str | None:
    """Why ``name`` cannot name a function (None: it can). ``qualified``: NAME:ALIAS allowed."""
    if (_FUNCTION if qualified else _UNQUALIFIED).fullmatch(name):
        return None
    if not qualified and _FUNCTION.fullmatch(name):
        return f"{name!r} has a qualifier (:VERSION or :ALIAS); give the function's name alone"
    return f"{name!r} is not a function name: {NAME_RULES}"


def bare_name(name: str) -> str:
    """The function's name in NAME, NAME:QUALIFIER or an ARN (``name`` itself if it is none of them)."""
    match = _FUNCTION.fullmatch(name)
    return match.group("name") if match else name


def function_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for a NAME argument (NAME:ALIAS allowed)."""
    if value is not None:
        problem = name_problem(value)
        if problem:
            raise click.BadParameter(problem, ctx, param)
    return value


def unqualified_function_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for a function name that may not carry a qualifier (``deploy --name``)."""
    if value is not None:
        problem = name_problem(value, qualified=False)
        if problem:
            raise click.BadParameter(problem, ctx, param)
    return value


def offered_runtimes(endpoint: str) -> dict[str, Any] | None:
    """The server's ``/health``: ``runtimes`` (offered) and ``runtimes_unavailable``; None if
    it cannot be read (the request that follows then reports why)."""
    from squall.cli.client import CliError, fetch_json

    try:
        return fetch_json(endpoint, "/health", timeout=5.0)
    except CliError:
        return None


def runtime_problem(runtime: str, health: dict[str, Any] | None) -> str | None:
    """Why the server cannot run ``runtime`` (None: it can, or we cannot tell)."""
    if health is None or runtime.startswith("arn:"):
        return None
    offered = list(health.get("runtimes") or {})
    if not offered or runtime in offered:
        return None
    missing = health.get("runtimes_unavailable") or {}
    if runtime in missing:
        why = f"this server does not offer runtime {runtime!r}; it needs {missing[runtime]}"
    else:
        why = f"unknown runtime {runtime!r}"
    return f"{why}. This server offers: {', '.join(offered)} (see `squall runtimes`)"


def check_runtime(endpoint: str, runtime: str | None) -> None:
    """A usage error (exit 2) for ``--runtime`` when the server does not offer it."""
    if runtime is None:
        return
    problem = runtime_problem(runtime, offered_runtimes(endpoint))
    if problem:
        raise click.BadParameter(problem, param_hint="'--runtime'")
