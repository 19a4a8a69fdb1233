#!/usr/bin/env python
"""Batched classic-control envs (rlx/envs/batched.py) vs gymnasium's sync vector env, in one invocation.

    python scripts/bench_batched_envs.py                       # env stepping + PPO runs, 3 alternating repeats
    python scripts/bench_batched_envs.py --no-runs --sizes 1,2,4,8,16
    python scripts/bench_batched_envs.py --sizes "" --runs "A2C CartPole-v1"
    python scripts/bench_batched_envs.py --markdown benchmarks/results.md --append

Env stepping: steps/s of ``make_vec_env(..., batched=False)`` vs ``batched=True`` over pre-drawn random
actions (resets included), alternating, median of the repeats. Runs: the same ``rlx train`` invocation
with ``env.batched=false`` and ``env.batched=true``, alternating, each a fresh single-thread process;
steps/s from its summary.json. Ratios are what to read: the machine may be shared.
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
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
RUNS = {  # name -> (rlx train overrides); the tuned presets give PPO CartPole 8 envs, PPO Pendulum 4
    "PPO CartPole-v1": ["algo=ppo", "env=cartpole", "total_steps=50000"],
    "PPO Pendulum-v1": ["algo=ppo", "env=pendulum", "total_steps=20480"],
    "A2C CartPole-v1": ["algo=a2c", "env=cartpole", "total_steps=50000"],  # 5 env steps per update
}


def env_rate(env_id: str, n: int, batched: bool, steps: int) -> float:
    from rlx.envs.make import make_vec_env

    env = make_vec_env(env_id, n, 0, batched=batched)
    actions = [env.action_space.sample() for _ in range(steps)]
    t = time.perf_counter()
    for a in actions:
        env.step(a)
    rate = steps * n / (time.perf_counter() - t)
    env.close()
    return rate


def run_rate(overrides: list[str], batched: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", *overrides,
               f"env.batched={str(batched).lower()}", "seed=0", "eval.every=0", "checkpoint.every=0",
               "logger.progress=false", "logger.wandb.mode=disabled", "torch_threads=1", "device=cpu",
               f"hydra.run.dir={tmp}/run"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"rlx train failed: {r.stderr.strip()[-800:]}")
        return json.loads(Path(tmp, "run", "summary.json").read_text())["sps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", default="CartPole-v1,Pendulum-v1")
    ap.add_argument("--sizes", default="1,2,4,8,16", help="num_envs values for the stepping benchmark")
    ap.add_argument("--env-steps", type=int, default=4000, help="sub-env steps per stepping measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-runs", action="store_true", help="env stepping only")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of: {', '.join(RUNS)}")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    lines = ["| env | num_envs | sync steps/s | batched steps/s | batched / sync |", "|---|---:|---:|---:|---:|"] if args.sizes else []
    for env_id in args.envs.split(",") if args.sizes else []:
        for n in map(int, args.sizes.split(",")):
            vector_steps = max(args.env_steps // n, 200)
            rates = {False: [], True: []}
            for _ in range(args.repeats):
                for batched in (False, True):
                    rates[batched].append(env_rate(env_id, n, batched, vector_steps))
            s, b = statistics.median(rates[False]), statistics.median(rates[True])
            lines.append(f"| {env_id} | {n} | {s:,.0f} | {b:,.0f} | {b / s:.2f}x |")
            print(lines[-1], flush=True)
    if not args.no_runs:
        lines += [""] if lines else []
        lines += ["| run (same invocation) | env.batched=false steps/s | env.batched=true steps/s | true / false |",
                  "|---|---:|---:|---:|"]
        for name in args.runs.split(","):
            overrides = RUNS[name]
            rates = {False: [], True: []}
            for _ in range(args.repeats):
                for batched in (False, True):
                    rates[batched].append(run_rate(overrides, batched))
            s, b = statistics.median(rates[False]), statistics.median(rates[True])
            lines.append(f"| {name} `{' '.join(overrides)}` | {s:,.0f} | {b:,.0f} | {b / s:.2f}x |")
            print(lines[-1], flush=True)
    header = (f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {platform.machine()}, {os.cpu_count()} cores "
              f"(shared), Python {platform.python_version()}, numpy {np.__version__}, one torch thread, "
              f"median of {args.repeats} alternating repeats.\n"
              f"Command: `python scripts/bench_batched_envs.py {' '.join(sys.argv[1:])}`\n")
    text = "## Batched classic-control envs (`env.batched`)\n\n" + header + "\n" + "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        if args.append and args.markdown.exists():
            text = args.markdown.read_text() + "\n" + text
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
