#!/usr/bin/env python
"""RL-Zoo's classic-control rows, reproduced with rlx (issue 27): each row is 5 seeds trained as ONE population.

    python scripts/zoo_table.py                        # every row not yet in benchmarks/zoo.json
    python scripts/zoo_table.py --rows ppo-cartpole trpo-cartpole
    python scripts/zoo_table.py --rows ppo-cartpole --force   # measure a row again
    python scripts/zoo_table.py --quick --rows ppo-cartpole   # 1/50 of the budget, 2 seeds, nothing written

A row: ``rlx train algo=A env=E total_steps=<RL-Zoo's n_timesteps>`` with rlx's preset for the pair
(``rlx/conf/tuned/``, RL-Zoo's hyperparameters where it publishes them), seeds 0..4 as one population job
(``train_job``: member k is exactly its plain run with seed k), the final deterministic eval over
``--episodes`` episodes per seed. The table shows the IQM of the 5 final returns and its 95% percentile
bootstrap CI (rlx.analysis.report's statistics, as ``rlx report``), every seed's value, RL-Zoo's published
``mean_reward`` for the same budget (benchmark.md: ONE run of RL-Zoo's trained agent, evaluated over ~150k
steps, so a single draw, not a mean over seeds) and the row's wall time on this machine.

Results accumulate in benchmarks/zoo.json (one entry per row, with the machine and the commit), and
benchmarks/zoo.md is rewritten from all of them, so rows can be measured in several sittings.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Row:
    algo: str
    env: str       # rlx's env config name
    env_id: str
    steps: int     # RL-Zoo's n_timesteps
    zoo: float     # RL-Zoo benchmark.md mean_reward (deterministic eval of one trained agent)

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env}"


# RL-Zoo benchmark.md (DLR-RM/rl-baselines3-zoo), classic control, algorithms rlx has
ROWS = [
    Row("ppo", "cartpole", "CartPole-v1", 100_000, 500.0),
    Row("ppo", "acrobot", "Acrobot-v1", 1_000_000, -73.506),
    Row("ppo", "pendulum", "Pendulum-v1", 100_000, -172.225),
    Row("ppo", "mountaincar_continuous", "MountainCarContinuous-v0", 20_000, 88.343),
    Row("a2c", "cartpole", "CartPole-v1", 500_000, 500.0),
    Row("a2c", "acrobot", "Acrobot-v1", 500_000, -83.353),
    Row("a2c", "pendulum", "Pendulum-v1", 1_000_000, -162.965),
    Row("a2c", "mountaincar_continuous", "MountainCarContinuous-v0", 100_000, 91.166),
    Row("trpo", "cartpole", "CartPole-v1", 100_000, 500.0),
    Row("trpo", "acrobot", "Acrobot-v1", 100_000, -83.114),
    Row("trpo", "pendulum", "Pendulum-v1", 100_000, -174.631),
    Row("trpo", "mountaincar_continuous", "MountainCarContinuous-v0", 50_000, 92.489),
    Row("sac", "pendulum", "Pendulum-v1", 20_000, -156.995),
    Row("sac", "mountaincar_continuous", "MountainCarContinuous-v0", 50_000, 94.679),
    Row("td3", "pendulum", "Pendulum-v1", 20_000, -151.855),
    Row("td3", "mountaincar_continuous", "MountainCarContinuous-v0", 300_000, 93.483),
    Row("ddpg", "pendulum", "Pendulum-v1", 20_000, -152.099),
    Row("ddpg", "mountaincar_continuous", "MountainCarContinuous-v0", 300_000, 93.512),
]


def has_preset(row: Row) -> bool:
    return (REPO / "rlx" / "conf" / "tuned" / f"{row.algo}_{row.env}.yaml").is_file()


def measure(row: Row, seeds: int, episodes: int, steps: int, work: Path) -> dict:
    from rlx.analysis.report import bootstrap_ci, iqm
    from rlx.config.compose import compose_run_config
    from rlx.train.driver import train_job

    cfgs, dirs = [], []
    for seed in range(seeds):
        cfg, _ = compose_run_config([f"algo={row.algo}", f"env={row.env}", f"total_steps={steps}", f"seed={seed}",
                                     "eval.every=0", f"eval.episodes={episodes}", "checkpoint.every=0",
                                     "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false"])
        cfgs.append(cfg)
        dirs.append(work / row.name / f"seed{seed}")
    t0 = time.perf_counter()
    summaries = train_job(cfgs, dirs)
    wall = time.perf_counter() - t0
    returns = [float(s["eval_return_mean"]) for s in summaries]
    lo, hi = bootstrap_ci(returns, stat=iqm)
    return {"row": row.name, "algo": row.algo, "env_id": row.env_id, "steps": steps, "seeds": seeds, "episodes": episodes,
            "preset": has_preset(row), "returns": [round(r, 2) for r in returns], "iqm": round(float(iqm(returns)), 2),
            "ci": [round(lo, 2), round(hi, 2)], "zoo": row.zoo, "wall_s": round(wall, 1),
            "statuses": sorted({str(s["status"]) for s in summaries})}


def machine() -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, no GPU; rlx {commit}"


def markdown(results: dict) -> str:
    lines = ["# RL-Zoo's classic-control rows, rlx, 5 seeds as one population", "",
             "`python scripts/zoo_table.py`. Each row: seeds 0-4 trained as ONE population job (each member is its "
             "plain run), final deterministic eval per seed; IQM and 95% percentile-bootstrap CI of the 5 final returns. "
             "RL-Zoo: `benchmark.md`'s mean_reward, ONE trained agent at the same budget. Wall: the whole population "
             "on the machine named per row. Rows without an rlx preset for the pair run rlx's algorithm defaults.", "",
             "| algo | env | steps | rlx IQM [95% CI] | seeds | RL-Zoo | preset | wall s | machine |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {r.name: i for i, r in enumerate(ROWS)}
    for name in sorted(results, key=lambda n: order.get(n, 99)):
        r = results[name]
        lines.append(f"| {r['algo']} | {r['env_id']} | {r['steps']:,} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
                     f"{' / '.join(f'{x:.0f}' for x in r['returns'])} | {r['zoo']:.1f} | {'yes' if r['preset'] else 'no'} | "
                     f"{r['wall_s']:.0f} | {r['machine']} |")
    missing = [r.name for r in ROWS if r.name not in results]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)} (`python scripts/zoo_table.py --rows ...`)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="*", help=f"row names (default: all): {', '.join(r.name for r in ROWS)}")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--force", action="store_true", help="measure rows already in the results again")
    ap.add_argument("--quick", action="store_true", help="1/50 of each budget, 2 seeds, 2 episodes; nothing written")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    known = {r.name: r for r in ROWS}
    unknown = [n for n in a.rows or [] if n not in known]
    if unknown:
        raise SystemExit(f"zoo_table: unknown row {unknown[0]}; rows: {', '.join(known)}")
    path = a.out / "zoo.json"
    results = {} if a.quick or not path.is_file() else json.loads(path.read_text())
    wanted = [known[n] for n in a.rows] if a.rows else [r for r in ROWS if a.force or r.name not in results]
    work = Path(tempfile.mkdtemp(prefix="rlx-zoo-"))
    try:
        for row in wanted:
            seeds, episodes, steps = (2, 2, max(2048, row.steps // 50)) if a.quick else (a.seeds, a.episodes, row.steps)
            r = measure(row, seeds, episodes, steps, work) | {"machine": machine()}
            print(f"{row.name}: IQM {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] ({r['returns']}), RL-Zoo {row.zoo}, "
                  f"{r['wall_s']:.0f} s", file=sys.stderr, flush=True)
            results[row.name] = r
            if not a.quick:  # after every row: a long sitting that stops keeps what it measured
                a.out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=1) + "\n")
                (a.out / "zoo.md").write_text(markdown(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
