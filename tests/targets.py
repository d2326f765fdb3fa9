"""Targets (what the resolver hands the executor) built by hand for tests below the engine."""

from __future__ import annotations

from pathlib import Path

from squall.arn import Arns
from squall.function import FunctionVersion
from squall.invoke.resolver import Target
from squall.runtimes.registry import Runtime

ARNS = Arns("us-east-1", "123456789012")


def target_of(
    fn: FunctionVersion, runtime: Runtime, code_dir: Path, network: str | None = "default", qualifier: str | None = None
) -> Target:
    return Target(fn, runtime, Path(code_dir), network, ARNS.function(fn.name, qualifier), qualifier)
