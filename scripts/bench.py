#!/usr/bin/env python
"""rlx vs Stable-Baselines3, side by side in one invocation, plus each task's compute floor.

    pip install -e ".[bench]"            # stable-baselines3, never a runtime dependency of rlx
    python scripts/bench.py              # all tasks, 3 alternating repeats
    python scripts/bench.py --quick      # short runs, 1 repeat (a smoke test of the numbers)
    python scripts/bench.py --tasks ppo_cartpole,sac_pendulum --repeats 5 --markdown benchmarks/results.md
    python scripts/bench.py --population --ks 1,4,16,64 --markdown benchmarks/population.md   # issue 12
    python scripts/bench.py --peers      # rlx vs SB3, SBX and rejax, each peer in its own venv (issue 27)
    python scripts/bench.py --peers --quick --repeats 2    # PPO CartPole 20k, SAC Pendulum 1k, TD3/DDPG 11k
    python scripts/bench.py --peers --one-core             # every process pinned to CPU 0: one core each, JAX's threads included
    python scripts/bench.py --recurrent --repeats 2        # recurrent PPO CartPoleNoVel 100k vs sb3-contrib (issue 26)

For every task rlx and the peer (../shared/peer/sb3_baseline.py) run the same algorithm, env, steps,
seed and hyperparameters, alternating, each in a fresh process with one torch thread. Reported:
median steps/s of each, the ratio, both final deterministic eval returns (10 episodes), and the
floor: env stepping alone plus the same number of bare gradient updates (a tight torch loop of the
same networks and losses with no toolkit around it), measured in the same invocation.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEER = REPO.parent / "shared" / "peer" / "sb3_baseline.py"


@dataclass
class Task:
    name: str
    algo: str
    env: str        # rlx env config name
    env_id: str     # gymnasium id (for the peer)
    steps: int
    quick_steps: int
    num_envs: int
    updates: Callable[[int], int]  # steps -> number of gradient updates rlx/SB3 perform
    floor: str      # which bare-update loop measures this task's updates


TASKS = {
    "ppo_cartpole": Task("PPO CartPole-v1", "ppo", "cartpole", "CartPole-v1", 100_000, 20_000, 8,
                         lambda s: -(-s // 256) * 20, "ppo"),
    "a2c_cartpole": Task("A2C CartPole-v1", "a2c", "cartpole", "CartPole-v1", 100_000, 20_000, 8,
                         lambda s: -(-s // 40), "a2c"),
    "sac_pendulum": Task("SAC Pendulum-v1", "sac", "pendulum", "Pendulum-v1", 20_000, 2_000, 1,
                         lambda s: max(0, s - 100), "sac"),
    "td3_pendulum": Task("TD3 Pendulum-v1", "td3", "pendulum", "Pendulum-v1", 20_000, 12_000, 1,
                         lambda s: max(0, s - 10_000), "td3"),
    "ddpg_pendulum": Task("DDPG Pendulum-v1", "ddpg", "pendulum", "Pendulum-v1", 20_000, 12_000, 1,
                          lambda s: max(0, s - 10_000), "ddpg"),
}

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def run_rlx(task: Task, steps: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", f"algo={task.algo}", f"env={task.env}",
               f"total_steps={steps}", f"seed={seed}", "eval.every=0", "checkpoint.every=0", "logger.progress=false",
               "logger.wandb.mode=disabled", "torch_threads=1", "device=cpu", f"hydra.run.dir={tmp}/run"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"rlx failed on {task.name}: {r.stderr.strip()[-500:]}")
        s = json.loads(Path(tmp, "run", "summary.json").read_text())
    return {"sps": s["sps"], "wall_s": s["wall_s"], "return": s["eval_return_mean"]}


def run_peer(task: Task, steps: int, seed: int, peer: Path) -> dict:
    r = subprocess.run([sys.executable, str(peer), task.algo, task.env_id, str(steps), str(seed)],
                       capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise RuntimeError(f"peer failed on {task.name}: {r.stderr.strip()[-500:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"sps": d["sps"], "wall_s": d["wall_s"], "return": d["eval_mean"]}


def run_floor(task: Task, steps: int) -> dict:
    """Env-only and bare-update rates, measured in a fresh single-thread process."""
    args = f"{task.floor!r}, {task.env_id!r}, {task.num_envs}, {steps}, {task.updates(steps)}"
    code = f"from scripts.floors import measure; import json; print(json.dumps(measure({args})))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(REPO)}, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"floor failed on {task.name}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short runs, 1 repeat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", type=Path, default=DEFAULT_PEER)
    ap.add_argument("--no-peer", action="store_true", help="rlx and floors only")
    ap.add_argument("--markdown", type=Path, help="also write the table (with machine info) to this file")
    ap.add_argument("--append", action="store_true", help="append the table to --markdown instead of replacing it")
    ap.add_argument("--population", action="store_true",
                    help="populations (issue 12): one process of K PPO CartPole members vs plain rlx and SB3 runs")
    ap.add_argument("--population-algo", choices=("ppo", "sac"), default="ppo",
                    help="--population: PPO CartPole (default: K=1,4,16,64, 100k steps) or SAC Pendulum (K=1,4,16, 10k)")
    ap.add_argument("--ks", help="population sizes for --population")
    ap.add_argument("--steps", type=int, help="env steps per member for --population")
    ap.add_argument("--peer-python", default=sys.executable, help="the Python that has stable-baselines3 (a separate venv)")
    ap.add_argument("--peers", action="store_true",
                    help="rlx vs SB3, SBX and rejax (PPO CartPole 100k, SAC Pendulum 5k), each peer in its own venv "
                         "under ~/.cache/rlx-peers (created on first use); writes benchmarks/peers.{json,md}")
    ap.add_argument("--peer-libs", default="rlx_compile,sb3,sbx,rejax",
                    help="--peers: which peers (rlx_compile: rlx with compile=true, on SAC/TD3/DDPG)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks", help="--peers: where peers.json/peers.md go")
    ap.add_argument("--population-vs-rejax", action="store_true",
                    help="PPO CartPole populations of --ks members (default 16,64) vs rejax's vmap over as many configs, "
                         "rejax in its own venv like --peers; writes benchmarks/population_rejax.{json,md}")
    ap.add_argument("--recurrent", action="store_true",
                    help="recurrent PPO (LSTM) CartPoleNoVel-v1 100k vs sb3-contrib's RecurrentPPO, RL-Zoo's preset on both "
                         "sides, sb3-contrib in its own venv like --peers; repeat i runs seed + i on both sides; "
                         "writes benchmarks/recurrent.{json,md}")
    ap.add_argument("--one-core", action="store_true",
                    help="--peers/--population-vs-rejax/--recurrent: pin every process to CPU 0 (sched_setaffinity): one "
                         "core each even for a library that starts threads despite the one-thread flags")
    args = ap.parse_args()
    if args.one_core:
        sys.path.insert(0, str(REPO))
        import scripts.peers.bench_peers as bench_peers

        bench_peers.PIN_CPU = 0
    if args.recurrent:
        sys.path.insert(0, str(REPO))
        from scripts.peers.bench_peers import main as peers_main

        peers_main(["recurrent_ppo_cartpole_novel"], args.repeats, args.quick, args.seed, ["sb3c"], args.out, sys.argv[1:],
                   seed_per_repeat=True, stem="recurrent")
        return
    if args.population_vs_rejax:
        sys.path.insert(0, str(REPO))
        from scripts.peers.bench_peers import population_vs_rejax

        population_vs_rejax([int(k) for k in (args.ks or "16,64").split(",")], args.steps or (20_000 if args.quick else 100_000),
                            1 if args.quick else args.repeats, args.out, sys.argv[1:])
        return
    if args.peers:
        sys.path.insert(0, str(REPO))
        from scripts.peers.bench_peers import TASKS as PEER_TASKS, main as peers_main

        tasks = ([t for t in args.tasks.split(",") if t in PEER_TASKS] if args.tasks != ",".join(TASKS)
                 else [t for t in PEER_TASKS if t != "recurrent_ppo_cartpole_novel"])  # that one: --recurrent
        peers_main(tasks, args.repeats, args.quick, args.seed, args.peer_libs.split(","), args.out, sys.argv[1:])
        return
    if args.population:
        sys.path.insert(0, str(REPO))
        from scripts.bench_population import main as population_main

        peer = None if args.no_peer or not args.peer.is_file() else args.peer
        sac = args.population_algo == "sac"
        ks = args.ks or ("1,4,16" if sac else "1,4,16,64")
        steps = args.steps or (10_000 if sac else 100_000)
        ptask = ("sac", "pendulum", "Pendulum-v1") if sac else ("ppo", "cartpole", "CartPole-v1")
        population_main([int(k) for k in ks.split(",")], steps, 1 if args.quick else args.repeats, peer,
                        args.peer_python, args.markdown, *ptask)
        return
    repeats = 1 if args.quick else args.repeats
    have_peer = not args.no_peer and args.peer.is_file()
    if not have_peer and not args.no_peer:
        print(f"peer script not found at {args.peer}; running rlx and floors only", file=sys.stderr)

    rows = []
    for key in args.tasks.split(","):
        task = TASKS[key]
        steps = task.quick_steps if args.quick else task.steps
        rlx_runs, peer_runs = [], []
        for i in range(repeats):  # alternate so drifts in machine load hit both equally
            rlx_runs.append(run_rlx(task, steps, args.seed))
            if have_peer:
                peer_runs.append(run_peer(task, steps, args.seed, args.peer))
            print(f"{task.name} repeat {i + 1}/{repeats}: rlx {rlx_runs[-1]['sps']:.0f} sps"
                  + (f", sb3 {peer_runs[-1]['sps']:.0f} sps" if peer_runs else ""), file=sys.stderr, flush=True)
        floor = run_floor(task, steps)
        def med(runs, k):
            return statistics.median(r[k] for r in runs)

        row = {"task": task.name, "steps": steps, "rlx_sps": med(rlx_runs, "sps"), "rlx_return": med(rlx_runs, "return"),
               "floor_sps": floor["floor_sps"], "env_sps": floor["env_sps"], "updates_per_s": floor["updates_per_s"],
               "updates": task.updates(steps)}
        if peer_runs:
            row.update(sb3_sps=med(peer_runs, "sps"), sb3_return=med(peer_runs, "return"))
        rows.append(row)

    table = render(rows, repeats)
    print(table)
    if args.markdown:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        import torch

        header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine}, torch {torch.__version__}, "
                  f"one torch thread, seed {args.seed}, median of {repeats} alternating repeats.\n"
                  f"Command: `python scripts/bench.py {' '.join(sys.argv[1:])}`\n\n")
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        if args.append and args.markdown.exists():
            args.markdown.write_text(args.markdown.read_text() + "\n" + header + table + "\n")
        else:
            args.markdown.write_text("# rlx benchmark\n\n" + header + table + "\n")


def render(rows: list[dict], repeats: int) -> str:
    lines = ["| task | steps | rlx steps/s | SB3 steps/s | rlx / SB3 | floor steps/s | rlx / floor | rlx return | SB3 return |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        sb3 = r.get("sb3_sps")
        sb3_sps = "-" if sb3 is None else f"{sb3:,.0f}"
        ratio = "-" if sb3 is None else f"{r['rlx_sps'] / sb3:.2f}x"
        sb3_ret = "-" if sb3 is None else f"{r['sb3_return']:.1f}"
        lines.append(f"| {r['task']} | {r['steps']:,} | {r['rlx_sps']:,.0f} | {sb3_sps} | {ratio} | {r['floor_sps']:,.0f} | "
                     f"{100 * r['rlx_sps'] / r['floor_sps']:.0f}% | {r['rlx_return']:.1f} | {sb3_ret} |")
    detail = "; ".join(f"{r['task']}: env {r['env_sps']:,.0f} steps/s, {r['updates']:,} updates at {r['updates_per_s']:,.0f}/s"
                       for r in rows)
    lines += ["", "floor = env stepping alone + the same number of bare gradient updates (a tight torch loop of the same "
              f"networks, losses and batch sizes), both measured in this invocation. {detail}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
