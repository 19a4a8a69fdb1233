#!/usr/bin/env python
"""``rlx tune tune.population=K`` vs today's sequential trials (issue 25): one study, same settings and budget.

    python scripts/bench_tune.py                 # 16 trials x 30k steps, population of 8 vs 1, 2 alternating pairs
    python scripts/bench_tune.py --repeats 1     # one study of each
    python scripts/bench_tune.py --quick         # 4 trials x 4k steps, population 4 vs 1 (a smoke check)

The study: PPO CartPole-v1 (RL-Zoo preset), ``algo.lr`` log-uniform in [1e-4, 1e-2], ``algo.clip_eps`` in
[0.1, 0.3], ``algo.gae_lambda`` in [0.8, 0.99], ``trials`` trials of ``steps`` env steps, periodic deterministic
evals every ``eval_every`` steps (5 episodes), TPE (``tune.seed``, 5 start-up trials), the median pruner
(``warmup_evals=1``), no confirmation (``tune.confirm_seeds=0``: the search itself is measured). Each side is one
``rlx tune`` process; the sides alternate (population, sequential, population, ...), so a load on the machine
falls on both. Wall time is the process's, start-up included.

What differs, by design: the population asks K trials at once, so TPE models from fewer finished trials (rlx
turns on TPE's constant liar for trials in flight) and the median pruner compares a member's evals with the
trials of earlier populations only (the members of one population finish together); a pruned member's envs step
on to the end of its population (its updates stop), where a pruned sequential trial frees the CPU at once.
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

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
SPACE = ["algo.lr=tag(log,interval(1e-4,1e-2))", "algo.clip_eps=interval(0.1,0.3)", "algo.gae_lambda=interval(0.8,0.99)"]


def study_args(a: argparse.Namespace, population: int, study_dir: Path) -> list[str]:
    return ["algo=ppo", f"total_steps={a.steps}", f"eval.every={a.eval_every}", "eval.episodes=5", *SPACE,
            "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "checkpoint.every=0",
            f"tune.trials={a.trials}", f"tune.population={population}", "tune.confirm_seeds=0", "tune.pruner=median",
            "tune.startup_trials=5", "tune.warmup_evals=1", f"tune.seed={a.seed}", f"hydra.sweep.dir={study_dir}"]


def run_study(a: argparse.Namespace, population: int, work: Path) -> dict:
    import optuna

    d = work / f"study-k{population}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from rlx.app.cli import main; main()", "tune", *study_args(a, population, d)],
                       env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"rlx tune (population={population}) failed:\n{p.stderr[-3000:]}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = optuna.load_study(study_name=d.name, storage=f"sqlite:///{d / 'study.db'}").trials
    complete = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    env_steps = 0
    for t in trials:
        summary = Path(t.user_attrs["run_dir"]) / "summary.json"
        env_steps += json.loads(summary.read_text()).get("env_steps", 0) if summary.is_file() else 0
    return {"population": population, "wall_s": round(wall, 2), "best": max(complete, default=float("nan")),
            "median_complete": statistics.median(complete) if complete else float("nan"),
            "complete": len(complete), "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "trained_env_steps": env_steps}


def markdown(res: dict) -> str:
    a = res["settings"]
    lines = [f"# rlx tune: population of {a['population']} vs sequential trials", "",
             f"Machine: {res['machine']}. Study: PPO CartPole-v1, {a['trials']} trials x {a['steps']:,} env steps, "
             f"evals every {a['eval_every']:,}, TPE seed {a['seed']}, median pruner, no confirmation; "
             f"`python scripts/bench_tune.py` ({a['repeats']} alternating pair(s)).", "",
             "| pair | side | wall s | best eval return | median of completed | complete / pruned | env steps trained |",
             "|---|---|---|---|---|---|---|"]
    for i, (pop, seq) in enumerate(res["pairs"]):
        for name, r in ((f"population={pop['population']}", pop), ("sequential", seq)):
            lines.append(f"| {i + 1} | {name} | {r['wall_s']:.1f} | {r['best']:.1f} | {r['median_complete']:.1f} | "
                         f"{r['complete']} / {r['pruned']} | {r['trained_env_steps']:,} |")
    lines += ["", f"Wall time, sequential / population, per pair: {', '.join(f'{x:.2f}' for x in res['ratios'])} "
              f"(median {res['ratio_median']:.2f}x).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--eval-every", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks")
    a = ap.parse_args()
    if a.quick:
        a.trials, a.population, a.steps, a.eval_every, a.repeats = 4, 4, 4096, 2048, 1
    pairs = []
    with tempfile.TemporaryDirectory(prefix="rlx-bench-tune-") as tmp:
        for i in range(a.repeats):
            pop = run_study(a, a.population, Path(tmp))
            seq = run_study(a, 1, Path(tmp))
            print(f"pair {i + 1}: population {pop['wall_s']:.1f} s (best {pop['best']:.1f}), "
                  f"sequential {seq['wall_s']:.1f} s (best {seq['best']:.1f})", file=sys.stderr, flush=True)
            pairs.append((pop, seq))
    ratios = [seq["wall_s"] / pop["wall_s"] for pop, seq in pairs]
    res = {"settings": vars(a) | {"out": str(a.out)}, "pairs": pairs, "ratios": [round(r, 3) for r in ratios],
           "ratio_median": round(statistics.median(ratios), 3),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, no GPU"}
    text = markdown(res)
    print(text)
    if not a.quick:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "tune_population.json").write_text(json.dumps(res, indent=1) + "\n")
        (a.out / "tune_population.md").write_text(text)


if __name__ == "__main__":
    main()
