"""``squall versions`` and ``squall alias``: published versions and the aliases that point at them."""

from __future__ import annotations

from typing import Any

from squall.cli.client import CliError
from squall.cli.output import lambda_time, step, table


def parse_weight(value: str | None) -> dict[str, float] | None:
    """``--weight 3=0.1``: version 3 gets 10 % of the alias's invocations."""
    if value is None:
        return None
    version, sep, share = value.partition("=")
    try:
        weight = float(share)
    except ValueError:
        weight = -1.0
    if not sep or not version.isdigit() or not 0.0 <= weight <= 1.0:
        raise ValueError(f"{value!r} is not VERSION=WEIGHT (a published version and a share between 0 and 1)")
    return {version: weight}


def publish(lam: Any, name: str, description: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"FunctionName": name}
    if description is not None:
        params["Description"] = description
    with step(f"Publishing a version of {name}") as publishing:
        config = lam.publish_version(**params)
        publishing.result = f"version {config['Version']}"
    return config


def versions_table(lam: Any, name: str) -> str:
    versions = [v for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name) for v in page["Versions"]]
    aliases = [a for page in lam.get_paginator("list_aliases").paginate(FunctionName=name) for a in page["Aliases"]]
    pointing: dict[str, list[str]] = {}
    for alias in aliases:
        pointing.setdefault(alias["FunctionVersion"], []).append(alias["Name"])
        for version, weight in (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}).items():
            pointing.setdefault(version, []).append(f"{alias['Name']} ({weight:.0%})")
    rows = [
        (
            v["Version"],
            ", ".join(pointing.get(v["Version"], [])) or "-",
            v["CodeSha256"][:12],
            lambda_time(v.get("LastModified", "-")),
            v.get("Description") or "-",
        )
        for v in versions
    ]
    return table(("VERSION", "ALIASES", "CODE", "LAST MODIFIED", "DESCRIPTION"), rows)


def set_alias(lam: Any, name: str, alias: str, version: str | None, weights: dict[str, float] | None) -> dict[str, Any]:
    """Create the alias, or point an existing one elsewhere (and re-weight it)."""
    try:
        current = lam.get_alias(FunctionName=name, Name=alias)
    except lam.exceptions.ResourceNotFoundException:
        current = None
    if current is None:
        if version is None:
            raise CliError(f"{name} has no alias {alias} yet.", "Create it with --version N.")
        params: dict[str, Any] = {"FunctionName": name, "Name": alias, "FunctionVersion": version}
        if weights:
            params["RoutingConfig"] = {"AdditionalVersionWeights": weights}
        with step(f"Creating alias {alias} of {name}"):
            return lam.create_alias(**params)
    params = {"FunctionName": name, "Name": alias, "RevisionId": current["RevisionId"]}
    if version is not None:
        params["FunctionVersion"] = version
    if weights is not None:
        params["RoutingConfig"] = {"AdditionalVersionWeights": weights}
    with step(f"Updating alias {alias} of {name}"):
        return lam.update_alias(**params)


def describe_alias(config: dict[str, Any]) -> str:
    routing = (config.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    shares = [f"version {config['FunctionVersion']}"]
    if routing:
        (other, weight), = routing.items()
        shares = [f"version {config['FunctionVersion']} ({1 - weight:.0%})", f"version {other} ({weight:.0%})"]
    return f"{config['AliasArn']} → {' and '.join(shares)}"
