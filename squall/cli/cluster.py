"""``squall cluster status``: the front ends serving one database, what each runs.

Read from ``GET /squall/cluster`` on any front end (each writes its row to the database every
two seconds; docs/cluster.md).
"""

from __future__ import annotations

from typing import Any

import click

from squall.cli.client import Connection, api_command, fetch_json
from squall.cli.output import table

COLUMNS = ("FRONT END", "URL", "HOST", "PID", "ROLE", "UP", "SEEN", "BUSY", "IDLE", "PROV", "IN FLIGHT", "MEMORY MB")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def rows(status: dict[str, Any]) -> list[tuple[str, ...]]:
    out = []
    for fe in status.get("front_ends", []):
        envs = fe.get("environments") or {}
        role = "leader" if fe.get("leader") else "follower"
        if not fe.get("alive", True):
            role = "GONE?"
        out.append((
            fe["id"][:8] + (" *" if fe.get("this") else ""),
            fe.get("url", ""),
            fe.get("host", ""),
            str(fe.get("pid", "")),
            role,
            duration(float(fe.get("up_seconds", 0))),
            duration(float(fe.get("seen_seconds_ago", 0))) + " ago",
            str(envs.get("busy", 0)),
            str(envs.get("idle", 0)),
            str(envs.get("provisioned", 0)),
            str(fe.get("in_flight", 0)),
            f"{envs.get('memory_mb', 0)}/{envs.get('memory_capacity_mb', 0)}",
        ))
    return out


NODE_COLUMNS = ("NODE", "ADDRESS", "STATE", "AGENT", "CPUS", "BUSY", "IDLE", "MEMORY MB")


def node_rows(status: dict[str, Any]) -> list[tuple[str, ...]]:
    return [(node["node"][:12], node.get("address", ""), "alive" if node.get("alive") else "DEAD",
             node.get("agent", ""), f"{node.get('cpus', 0):g}", str(node.get("busy", 0)), str(node.get("idle", 0)),
             f"{node.get('memory_mb', 0)}/{node.get('memory_capacity_mb', 0)}")
            for node in status.get("nodes", [])]


@click.group()
def cluster() -> None:
    """Several front ends on one database (docs/cluster.md)."""


@cluster.command()
@api_command
def status(connection: Connection) -> None:
    """Show the front ends serving this server's database: the leader (which runs event source
    pollers and subscriptions), when each was last heard of, and the environments each runs
    (BUSY, IDLE, PROV: provisioned) with their memory (used/capacity). * marks the one asked."""
    report = fetch_json(connection.endpoint, "/squall/cluster", region=connection.region)
    click.echo(table(COLUMNS, rows(report)))
    if "nodes" in report:  # --executor ray: environments run on the Ray cluster's nodes
        click.echo("")
        click.echo(table(NODE_COLUMNS, node_rows(report)))
    gone = [fe for fe in report.get("front_ends", []) if not fe.get("alive", True)]
    if gone:
        click.echo(f"{len(gone)} front end(s) not heard of for 10 s or more: stopped, or cut off from the database "
                   "(their rows are removed after an hour).")
