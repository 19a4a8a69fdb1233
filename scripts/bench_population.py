"""Populations (issue 12) vs separate runs: ``python scripts/bench.py --population`` calls :func:`main`.

For each K: the wall time of ONE population process training K members (PPO CartPole, ε 0.1/0.2/0.3
and seeds cycling, 100k steps per member; or SAC Pendulum, τ 0.005/0.01/0.02 and seeds cycling, 10k),
of one plain ``rlx train`` run, and of one SB3 run (the peer script), each in a fresh single-thread
process, alternating. "K sequential" columns are K x the measured
one-run time (running 64 x 100k sequentially would take most of an hour and measures nothing new).
Peak RSS of each process (``ru_maxrss``) too: one population of K vs K separate runs (K x one run's).

"population wall" is the whole ``train_population`` call (building the envs, training, every member's final
evaluation, K run dirs) against a plain run's training-only ``wall_s``: conservative for the population.
"training / plain run's training" compares like with like: the population's training clock (its first
member's ``wall_s``, stopped before the final evaluations) against the plain run's.
"""
from __future__ import annotations

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
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
QUIET = ["eval.every=0", "checkpoint.every=0", "logger.progress=false", "logger.wandb.mode=disabled",
         "logger.tensorboard=false", "torch_threads=1", "device=cpu"]
RSS = "import resource, json; print(json.dumps({'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"

POPULATION = """
import json, sys, time, resource
from rlx.config.compose import compose_config
from rlx.train.driver import train_job as train_population
k, steps, algo, env, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
quiet = json.loads(sys.argv[6])
# the knob each algorithm's sweep varies: PPO's clip ε, SAC's Polyak τ (3 values cycling, seeds 0, 0, 0, 1, ...)
knob = {"ppo": ("clip_eps", (0.1, 0.2, 0.3)), "sac": ("tau", (0.005, 0.01, 0.02))}.get(algo)
cfgs = [compose_config([f"algo={algo}", f"env={env}", f"total_steps={steps}", f"seed={i // 3}",
                        *([f"algo.{knob[0]}={knob[1][i % 3]}"] if knob else []), *quiet]) for i in range(k)]
t = time.perf_counter()
out = train_population(cfgs, [f"{tmp}/m{i}" for i in range(k)])
wall = time.perf_counter() - t
# training alone, as a plain run's summary wall_s: member 0's (its session's clock stops before the final evaluations)
train = min(o["wall_s"] for o in out if "wall_s" in o)
print(json.dumps({"wall_s": wall, "train_s": train, "returns": [o["eval_return_mean"] for o in out],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(cmd: list[str], cwd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(REPO)}, cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {r.stderr.strip()[-800:]}")
    return r.stdout


def population(k: int, steps: int, algo: str, env: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = _run([sys.executable, "-c", POPULATION, str(k), str(steps), algo, env, tmp, json.dumps(QUIET)], tmp)
    return json.loads(out.strip().splitlines()[-1])


def plain(steps: int, algo: str, env: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import sys, runpy; sys.argv = ['rlx', *sys.argv[1:]]\n"
                "from rlx.app.cli import main\ntry:\n    main()\nfinally:\n    " + RSS.replace("; ", "\n    "))
        out = _run([sys.executable, "-c", code, "train", f"algo={algo}", f"env={env}", f"total_steps={steps}", "seed=0",
                    *QUIET, f"hydra.run.dir={tmp}/run"], tmp)
        s = json.loads(Path(tmp, "run", "summary.json").read_text())
    return {"wall_s": s["wall_s"], "train_s": s["wall_s"], "returns": [s["eval_return_mean"]],
            "rss_mb": json.loads(out.strip().splitlines()[-1])["rss_mb"]}


def peer(steps: int, algo: str, env_id: str, peer_script: Path, python: str) -> dict:
    code = "import runpy, sys; sys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nfinally:\n    " \
           + RSS.replace("; ", "\n    ")
    out = _run([python, "-c", code, str(peer_script), algo, env_id, str(steps), "0"], str(REPO))
    lines = out.strip().splitlines()
    d = json.loads(lines[-2])
    return {"wall_s": d["wall_s"], "returns": [d["eval_mean"]], "rss_mb": json.loads(lines[-1])["rss_mb"]}


def main(ks: list[int], steps: int, repeats: int, peer_script: Path | None, peer_python: str, markdown: Path | None,
         algo: str = "ppo", env: str = "cartpole", env_id: str = "CartPole-v1") -> None:
    runs: dict[str, list[dict]] = {"plain": [], "sb3": [], **{f"pop{k}": [] for k in ks}}
    for i in range(repeats):  # alternate so machine-load drift hits every configuration alike
        runs["plain"].append(plain(steps, algo, env))
        print(f"repeat {i + 1}: plain {runs['plain'][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if peer_script is not None:
            runs["sb3"].append(peer(steps, algo, env_id, peer_script, peer_python))
            print(f"repeat {i + 1}: sb3 {runs['sb3'][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        for k in ks:
            runs[f"pop{k}"].append(population(k, steps, algo, env))
            r = runs[f"pop{k}"][-1]
            print(f"repeat {i + 1}: K={k} {r['wall_s']:.1f} s, returns min {min(r['returns']):.0f}", file=sys.stderr, flush=True)

    def med(key: str, field: str = "wall_s") -> float:
        return statistics.median(r[field] for r in runs[key])

    one, sb3 = med("plain"), (med("sb3") if runs["sb3"] else None)
    lines = ["| K | population wall (s) | / one plain run | training / plain run's training | K sequential rlx / population | "
             "K sequential SB3 / population | member returns (min / median) | peak RSS: population vs K runs (MB) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ks:
        wall = med(f"pop{k}")
        rets = sorted(x for r in runs[f"pop{k}"] for x in r["returns"])
        rss, rss_plain = med(f"pop{k}", "rss_mb"), med("plain", "rss_mb")
        lines.append(f"| {k} | {wall:.1f} | {wall / one:.2f}x | {med(f'pop{k}', 'train_s') / one:.2f}x | {k * one / wall:.2f}x | "
                     f"{'-' if sb3 is None else f'{k * sb3 / wall:.2f}x'} | {rets[0]:.0f} / {statistics.median(rets):.0f} | "
                     f"{rss:.0f} vs {k * rss_plain:.0f} |")
    lines += ["", f"One plain rlx run: {one:.1f} s (return {runs['plain'][0]['returns'][0]:.0f}, "
              f"peak RSS {med('plain', 'rss_mb'):.0f} MB)"
              + ("" if sb3 is None else f"; one SB3 run: {sb3:.1f} s (peak RSS {med('sb3', 'rss_mb'):.0f} MB)") + "."]
    table = "\n".join(lines)
    print(table)
    if markdown is not None:
        import torch

        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"
        header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC on {machine}, one torch thread, {steps:,} steps per member, "
                  f"median of {repeats} alternating repeat(s).\nCommand: `python scripts/bench.py {' '.join(sys.argv[1:])}`\n\n")
        markdown.parent.mkdir(parents=True, exist_ok=True)
        prev = markdown.read_text() if markdown.exists() else ""
        markdown.write_text(prev + ("\n" if prev else "") + header + table + "\n")
