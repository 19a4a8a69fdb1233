#!/usr/bin/env python
"""Whether rlx's hand-written CPU kernels pay on this machine: ``fused_kernels=true`` (the default) vs ``false``
(plain torch ops), one torch thread, alternating.

    python scripts/bench_kernels.py                        # the minibatch at K = 1/16/64, then whole runs; 3 repeats
    python scripts/bench_kernels.py --repeats 3 --out benchmarks

1. One minibatch's forward + backward of PPO CartPole's two heads (4-64-64-{2,1} tanh, batch 256) as a population
   of K stacks them (rlx.networks.stacked.StackedMLP), best of 7 rounds, on and off taking turns.
2. Whole runs, each a fresh process: ``rlx train algo=ppo env=cartpole`` (RL-Zoo's preset, 100k steps) and a
   K = 16 population of it (16 seeds, 20k steps per member, one process: rlx.train.driver.train_job), on and off
   alternating; the training loop's wall (``summary.json``'s ``wall_s``; the population: the job's wall).

Writes ``OUT/kernels.{json,md}`` with ``--out``. Machines differ: the tricks were chosen on one CPU, and this is
the script that says whether they pay on another (``fused_kernels=false`` turns them off).
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

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.profile_population import best_ms  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
QUIET = ["logger.progress=false", "logger.wandb.mode=disabled", "logger.tensorboard=false", "torch_threads=1",
         "checkpoint.every=0"]
POPULATION = """
import json, sys, time
from rlx.config.compose import compose_config
from rlx.train.driver import train_job
k, steps, fused, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
quiet = json.loads(sys.argv[5])
cfgs = [compose_config(["algo=ppo", "env=cartpole", f"total_steps={steps}", f"seed={i}", f"fused_kernels={fused}",
                        "eval.every=0", *quiet]) for i in range(k)]
t = time.perf_counter()
train_job(cfgs, [f"{tmp}/m{i}" for i in range(k)])
print(json.dumps({"train_s": time.perf_counter() - t}))
"""


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def minibatch(ks: list[int], repeats: int) -> list[dict]:
    from rlx.networks.fused import set_fused_kernels
    from rlx.networks.stacked import StackedMLP

    rows = []
    for k in ks:
        actor, critic = StackedMLP(4, 2, [64, 64], "tanh", k), StackedMLP(4, 1, [64, 64], "tanh", k)
        x = torch.randn(k, 256, 4)

        def step(actor=actor, critic=critic, x=x) -> None:
            (actor(x).logsumexp(-1).sum() + critic(x).sum()).backward()

        got: dict[bool, list[float]] = {True: [], False: []}
        for i in range(repeats):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                set_fused_kernels(on)
                got[on].append(best_ms(step, n=max(5, 200 // k), rounds=7))
        set_fused_kernels(True)
        rows.append({"k": k, "on_ms": min(got[True]), "off_ms": min(got[False])})
        print(f"minibatch K={k}: on {rows[-1]['on_ms']:.3f} ms, off {rows[-1]['off_ms']:.3f} ms", file=sys.stderr, flush=True)
    return rows


def plain_run(steps: int, fused: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "algo=ppo", "env=cartpole",
               f"total_steps={steps}", f"fused_kernels={fused}", *QUIET, f"hydra.run.dir={tmp}/run"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-600:]}")
        return float(json.loads((Path(tmp) / "run" / "summary.json").read_text())["wall_s"])


def population_run(k: int, steps: int, fused: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", POPULATION, str(k), str(steps), fused, tmp, json.dumps(QUIET)],
                           capture_output=True, text=True, env=ENV, cwd=REPO)
        if r.returncode != 0:
            raise RuntimeError(f"population K={k} failed: {r.stderr.strip()[-600:]}")
        return float(json.loads(r.stdout.strip().splitlines()[-1])["train_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1,16,64", help="population sizes for the minibatch part")
    ap.add_argument("--steps", type=int, default=100_000, help="the plain run's total_steps")
    ap.add_argument("--population", type=int, default=16, help="K of the whole-population part (0: skip it)")
    ap.add_argument("--population-steps", type=int, default=20_000, help="total_steps per member")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="where kernels.json/kernels.md go")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = minibatch([int(k) for k in args.ks.split(",")], args.repeats)
    runs: dict[str, list[float]] = {}
    for i in range(args.repeats):
        for fused in (("true", "false") if i % 2 == 0 else ("false", "true")):
            runs.setdefault(f"plain_{fused}", []).append(plain_run(args.steps, fused))
            print(f"repeat {i + 1}: plain run fused_kernels={fused}: {runs[f'plain_{fused}'][-1]:.2f} s", file=sys.stderr, flush=True)
            if args.population:
                runs.setdefault(f"population_{fused}", []).append(population_run(args.population, args.population_steps, fused))
                print(f"repeat {i + 1}: K={args.population} population fused_kernels={fused}: "
                      f"{runs[f'population_{fused}'][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {key: statistics.median(v) for key, v in runs.items()}
    machine = (f"{platform.machine()} ({cpu_model()}), {os.cpu_count()} cores, torch {torch.__version__}, "
               f"one thread; load {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    lines = ["# fused_kernels=true vs false (rlx's hand-written CPU kernels vs plain torch ops)", "",
             f"Measured {started} on {machine}. Command: `python scripts/bench_kernels.py {' '.join(sys.argv[1:])}`.", "",
             "| one minibatch, forward + backward of both heads | K | on ms | off ms | off / on |", "|---|---:|---:|---:|---:|"]
    lines += [f"| PPO CartPole heads, batch 256 | {r['k']} | {r['on_ms']:.3f} | {r['off_ms']:.3f} | {r['off_ms'] / r['on_ms']:.2f}x |"
              for r in rows]
    lines += ["", f"| whole run (training loop, median of {args.repeats}) | on s | off s | off / on |", "|---|---:|---:|---:|",
              f"| PPO CartPole {args.steps:,} steps, plain run | {med['plain_true']:.2f} | {med['plain_false']:.2f} | "
              f"{med['plain_false'] / med['plain_true']:.2f}x |"]
    if args.population:
        lines.append(f"| PPO CartPole, K = {args.population} population, {args.population_steps:,} steps per member | "
                     f"{med['population_true']:.2f} | {med['population_false']:.2f} | "
                     f"{med['population_false'] / med['population_true']:.2f}x |")
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kernels.md").write_text(report + "\n")
        (args.out / "kernels.json").write_text(json.dumps({"machine": machine, "started": started, "minibatch": rows,
                                                           "runs": runs, "median": med}, indent=1) + "\n")


if __name__ == "__main__":
    main()
