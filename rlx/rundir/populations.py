"""A population sweep's record of its populations: ``SWEEP_DIR/populations.json`` (issue 22).

Written by the population launcher (rlx/app/launchers/population.py) before training starts, so that an
interrupted sweep has it; read by ``rlx resume SWEEP_DIR`` to resume each population's unfinished
members together. Member dirs are relative to the sweep dir. (A member's own run dir has
``population.json``, a pointer to its fellow members: another file, another name.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from rlx.rundir.files import write_json_atomic

POPULATIONS_FILE = "populations.json"
_OLD_NAME = "population.json"  # sweeps from before issue 22 named it as a member's pointer


def read_populations(sweep_dir: Path) -> dict[str, Any]:
    for name in (POPULATIONS_FILE, _OLD_NAME):
        try:
            data = json.loads((sweep_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("populations"), list):
            return data
    return {"populations": []}


def write_populations(sweep_dir: Path, data: dict[str, Any]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(sweep_dir / POPULATIONS_FILE, data)


def population_dirs(sweep_dir: Path) -> list[list[Path]]:
    """Each recorded population's member dirs, in launch order."""
    out = []
    for entry in read_populations(sweep_dir)["populations"]:
        members = [Path(os.path.normpath(sweep_dir / m)) for m in entry.get("members") or []]
        if members:
            out.append(members)
    return out


def population_status(member_status: Sequence[str | None]) -> str:
    """A population's status from its members': ok when each finished, failed when one failed and none
    can go on, else stopped (resumable)."""
    statuses = [s or "running" for s in member_status]
    if all(s in ("ok", "pruned") for s in statuses):
        return "ok"
    if any(s in ("stopped", "running") for s in statuses):
        return "stopped"
    return "failed"


def update_population_status(sweep_dir: Path, number: int, member_status: Sequence[str | None]) -> None:
    data = read_populations(sweep_dir)
    if number >= len(data["populations"]):
        return
    entry = data["populations"][number]
    entry.update(status=population_status(member_status), member_status=list(member_status))
    write_populations(sweep_dir, data)
