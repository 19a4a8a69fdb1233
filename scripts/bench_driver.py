"""The one driver against the two it replaced (issue 22): wall time of a plain run (K=1) and of PPO CartPole
populations (K=16, 64) on this checkout vs an older commit's, alternating in one invocation.

    git worktree add /tmp/rlx-old 24118e7
    python scripts/bench_driver.py --old /tmp/rlx-old --ks 1,16 --steps 30000 --pairs 2

Each timing is a fresh subprocess (``PYTHONPATH`` = the checkout) that trains K members of ``algo=ppo
env=cartpole`` (RL-Zoo's preset, seeds 0..K-1) with the checkout's own API (``rlx.train.driver.train_job``
here; ``rlx.train.run.train`` / ``rlx.train.population.train_population`` before the one driver) and prints
the wall time of that call. Results: benchmarks/driver.json and benchmarks/driver.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import sys, time, tempfile
from pathlib import Path
k, steps = int(sys.argv[1]), int(sys.argv[2])
from rlx.config.compose import compose_config
cfgs = [compose_config(["algo=ppo", "env=cartpole", f"total_steps={steps}", f"seed={i}", "logger.wandb.mode=disabled",
                        "logger.progress=false", "logger.tensorboard=false", "checkpoint.every=0", "eval.every=0"])
        for i in range(k)]
out = Path(tempfile.mkdtemp())
try:
    from rlx.train.driver import train_job
except ImportError:  # before the one driver: a plain run and a population were two paths
    from rlx.train.population import train_population
    from rlx.train.run import train
    def train_job(cfgs, dirs):
        return [train(cfgs[0], dirs[0])] if len(cfgs) == 1 else train_population(cfgs, dirs)
t = time.perf_counter()
train_job(cfgs, [out / f"m{i}" for i in range(k)])
print(time.perf_counter() - t)
'''


def timed(checkout: Path, k: int, steps: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(k), str(steps)], cwd=tempfile.gettempdir(), env=env,
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the older commit (git worktree)")
    ap.add_argument("--ks", default="1,16")
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "benchmarks")
    args = ap.parse_args()
    new = Path(__file__).resolve().parents[1]
    rows = []
    for k in [int(x) for x in args.ks.split(",")]:
        old_t, new_t = [], []
        for pair in range(args.pairs):  # alternate which goes first
            order = [("old", args.old), ("new", new)] if pair % 2 == 0 else [("new", new), ("old", args.old)]
            for name, checkout in order:
                (old_t if name == "old" else new_t).append(timed(checkout, k, args.steps))
                print(f"K={k} pair {pair} {name}: {(old_t if name == 'old' else new_t)[-1]:.1f} s", flush=True)
        ratios = [n / o for n, o in zip(new_t, old_t, strict=True)]
        rows.append({"k": k, "steps_per_member": args.steps, "old_s": old_t, "new_s": new_t,
                     "new_over_old_median": statistics.median(ratios), "ratios": ratios})
    args.out.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    (args.out / "driver.json").write_text(json.dumps({"machine": machine, "old": str(args.old), "rows": rows}, indent=1))
    lines = [f"# One driver vs the two it replaced ({machine})", "",
             "| K | steps/member | old (s) | new (s) | new/old (median of pairs) |", "|---:|---:|---|---|---:|"]
    lines += [f"| {r['k']} | {r['steps_per_member']:,} | {', '.join(f'{x:.1f}' for x in r['old_s'])} | "
              f"{', '.join(f'{x:.1f}' for x in r['new_s'])} | {r['new_over_old_median']:.3f} |" for r in rows]
    (args.out / "driver.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
