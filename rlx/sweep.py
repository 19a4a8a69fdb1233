"""Sweeps: a Hydra multirun plus the report (implementation in progress)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from rlx.errors import UserError


def run_sweep(args: list[str], validate_fn: Callable[[list[str]], None], hydra_fn: Callable[[list[str]], None]) -> None:
    raise UserError("rlx sweep: not implemented yet")


def report_sweep(sweep_dir: Path) -> None:
    raise UserError("rlx report: not implemented yet")
