"""``squall deploy --template``: an AWS SAM template deployed to Squall.

:mod:`.template` reads the template, :mod:`.state` reads what the server holds for the stack,
:mod:`.plan` computes the change set, :mod:`.apply` makes it. See docs/sam.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from squall.cli.client import CliError
from squall.cli.output import human_size, note, step


def parse_overrides(values: tuple[str, ...]) -> dict[str, str]:
    """``K=V`` pairs (each value may itself hold several, space-separated, as ``sam deploy`` takes them)."""
    overrides: dict[str, str] = {}
    for value in values:
        for pair in value.split():
            if pair.startswith("ParameterKey="):  # the CloudFormation CLI's spelling
                key, sep, text = pair.removeprefix("ParameterKey=").partition(",ParameterValue=")
            else:
                key, sep, text = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"{pair!r} is not KEY=VALUE")
            overrides[key] = text
    return overrides


def package_all(stack: Any) -> dict[Path, bytes]:
    """Every CodeUri and ContentUri directory zipped (as ``squall deploy DIR`` zips one)."""
    from squall.code import package_path

    directories = [f.code_dir for f in stack.functions.values()] + [layer.content_dir for layer in stack.layers.values()]
    packages: dict[Path, bytes] = {}
    for directory in directories:
        if directory in packages:
            continue
        with step(f"Packaging {directory}") as packaging:
            try:
                packages[directory] = package_path(directory)
            except (ValueError, OSError) as exc:
                raise CliError(f"Cannot package {directory}: {exc}", "Fix CodeUri/ContentUri in the template.") from None
            packaging.result = human_size(len(packages[directory]))
    return packages


def deploy_template(connection: Any, template: Path, stack_name: str | None, overrides: dict[str, str],
                    yes: bool, dry_run: bool) -> None:
    from squall.cli.sam.apply import apply_plan
    from squall.cli.sam.plan import compute_plan
    from squall.cli.sam.state import Clients, read_current
    from squall.cli.sam.template import TemplateError, read_stack

    try:
        stack = read_stack(template, stack_name, overrides, connection.region)
    except TemplateError as exc:
        raise CliError(f"{template}: {exc}", "Fix the template (or --parameter-overrides) and deploy again.",
                       exit_code=2) from None
    packages = package_all(stack)
    clients = Clients(connection)
    current = read_current(clients, stack)
    try:
        plan = compute_plan(stack, current, packages)
    except TemplateError as exc:
        raise CliError(str(exc), "Give the function another FunctionName, or delete the one in the way "
                                 "(`squall delete NAME`).") from None
    click.echo(plan.render())
    if not plan.actions:
        return
    if dry_run:
        note("Dry run: nothing was changed.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("Not applying the change set: there is no terminal to confirm it on.",
                           "Pass --yes to apply it without asking (or --dry-run to only show it).")
        if not click.confirm("Apply this change set?", default=False, err=True):
            note("Nothing was changed.")
            return
    apply_plan(clients, plan, packages)
    note(f"Stack {stack.name} is deployed.")
    _summary(connection, stack)


def _summary(connection: Any, stack: Any) -> None:
    """One line per function: its name, and its URL when it has one."""
    lam = connection.lam
    for function in stack.functions.values():
        line = f"{function.logical_id}: {function.name}" + (f" (alias {function.alias})" if function.alias else "")
        if function.url is not None:
            qualifier = {"Qualifier": function.alias} if function.alias else {}
            try:
                line += f"  {lam.get_function_url_config(FunctionName=function.name, **qualifier)['FunctionUrl']}"
            except lam.exceptions.ResourceNotFoundException:
                pass
        click.echo(line)
