"""What a PBT sweep's ``pbt.jsonl`` says (issue 25): per population, the winner (best final eval), the line of
members its weights came through (its family tree), and the hyperparameter schedule along that line, written
as ``pbt_schedule_<winner>.json`` for ``rlx train ... pbt.replay=FILE`` (Ray's "PBT replay")."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlx.train.pbt import LINEAGE, read_lineage


@dataclass
class PopulationLineage:
    members: list[str]
    rounds: int
    winner: str
    final_return: float
    ancestry: list[tuple[int, int, str, str]] = field(default_factory=list)  # (round, env step, member, copied from)
    schedule: list[dict[str, Any]] = field(default_factory=list)  # {"env_steps", "member" (whose weights), keys...}
    replay: str = ""  # the command that replays the schedule as a plain run


def _final_return(run_dir: Path) -> float | None:
    try:
        value = json.loads((run_dir / "summary.json").read_text()).get("eval_return_mean")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _initial_values(run_dir: Path, keys: list[str]) -> dict[str, float]:
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    out = {}
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            out[key] = float(node)
    return out


def _replay_command(root: Path, schedule_file: Path) -> str:
    overrides_file = root / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    kept = [o for o in overrides or [] if not o.startswith(("pbt.enabled", "hydra/launcher", "hydra.launcher"))]
    return " ".join(["rlx train", *kept, f"pbt.replay={schedule_file}"])


def lineages(sweep_dir: str | Path) -> list[PopulationLineage]:
    """Every population's lineage in ``sweep_dir`` (none without ``pbt.jsonl``); writes the winners' schedules."""
    sweep = Path(sweep_dir)
    if not (sweep / LINEAGE).is_file():
        return []
    by_population: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in read_lineage(sweep):
        by_population.setdefault(tuple(record["members"]), []).append(record)
    out = []
    for members, rounds in by_population.items():
        finals = {m: r for m in members if (r := _final_return(sweep / m)) is not None}
        if not finals:
            continue
        winner = max(finals, key=lambda m: (finals[m], -members.index(m)))
        owner, owners_after, ancestry = winner, {}, []
        for record in reversed(rounds):
            owners_after[record["round"]] = owner
            exploit = next((e for e in record["exploits"] if e["member"] == owner), None)
            if exploit is not None:
                ancestry.append((record["round"], record["env_steps"], owner, exploit["from"]))
                owner = exploit["from"]
        keys = list(rounds[0]["hyperparameters"][members[0]]) if rounds else []
        schedule = [{"env_steps": 0, "member": owner, **_initial_values(sweep / owner, keys)}]
        schedule += [{"env_steps": r["env_steps"], "member": owners_after[r["round"]],
                      **r["hyperparameters"][owners_after[r["round"]]]} for r in rounds]
        schedule_file = sweep / f"pbt_schedule_{winner}.json"
        schedule_file.write_text(json.dumps([{k: v for k, v in x.items() if k != "member"} for x in schedule], indent=1))
        out.append(PopulationLineage(list(members), len(rounds), winner, finals[winner], ancestry, schedule,
                                     _replay_command(sweep / owner, schedule_file)))
    return out


def lineage_markdown(items: list[PopulationLineage]) -> str:
    """report.md's PBT section: each population's winner, family tree and schedule."""
    if not items:
        return ""
    lines = ["", "## Population-based training", ""]
    for p in items:
        tree = " ← ".join([p.winner, *(f"{src} (round {r}, step {step:,})" for r, step, _, src in p.ancestry)])
        lines += [f"Population {', '.join(p.members)}: {p.rounds} rounds; winner **{p.winner}** (final eval "
                  f"{p.final_return:.1f}); its weights came through {tree}.", ""]
        keys = [k for k in p.schedule[0] if k not in ("env_steps", "member")] if p.schedule else []
        lines += ["| env step | weights of | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
        lines += [f"| {x['env_steps']:,} | {x['member']} | " + " | ".join(f"{x.get(k, float('nan')):.4g}" for k in keys) + " |"
                  for x in p.schedule]
        lines += ["", f"Replay the winner's schedule as a plain run: `{p.replay}`", ""]
    return "\n".join(lines)
