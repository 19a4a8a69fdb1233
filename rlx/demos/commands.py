"""What `rlx demo advantage|multimodal` do, kept out of rlx/app/cli.py (which only parses and calls)."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from rlx.errors import UserError


def default_dir(name: str) -> Path:
    return Path("outputs") / f"demo-{name}" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")


def _fresh(out: Path | None, name: str) -> Path:
    out = Path(out) if out is not None else default_dir(name)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: directory exists and is not empty; choose a new one")
    return out


def advantage(out: Path | None, seed: int, kicks: int, updates: int, as_json: bool) -> str:
    import torch

    from rlx.demos import advantage as demo

    torch.set_num_threads(1)  # tiny MLPs: one thread is fastest (as torch_threads=1 for training)
    result = demo.run(_fresh(out, "advantage"), seed, kicks, updates)
    if as_json:
        return json.dumps(result)
    return (f"Penalty shootout, uniform kicker (pi = 0.5/0.5), {result['kicks']} sampled kicks "
            f"({result['empirical_left_rate']:.1%} shot left), rlx's critics:\n{demo.table(result)}\n"
            f"A2C, {result['updates']} updates: pi(left|s) {result['pi_left_start']:.2f} -> {result['pi_left_end']:.2f}, "
            f"V(s) -> {result['V_end']:.2f}\nplot: {Path(result['run_dir']) / 'advantage.png'}")


def multimodal(out: Path | None, seed: int, steps: int, alpha: float, episodes: int, as_json: bool) -> str:
    import torch

    from rlx.demos import multimodal as demo

    if not alpha > 0:
        raise UserError(f"--alpha={alpha}: out of range, allowed (0, inf)")
    torch.set_num_threads(1)
    full = demo.run(_fresh(out, "multimodal"), seed, steps, alpha, episodes)
    if as_json:
        return json.dumps(demo.summary(full))
    return f"{demo.table(full)}\nplot: {Path(full['run_dir']) / 'multimodal.png'}"
