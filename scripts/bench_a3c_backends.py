#!/usr/bin/env python
"""A3C steps/s: ``algo.backend=processes`` vs ``algo.backend=ray`` with 1 and 2 workers, in one invocation.

    pip install -e ".[ray]"
    python scripts/bench_a3c_backends.py                      # 40k CartPole steps per run, 2 alternating repeats
    python scripts/bench_a3c_backends.py --steps 20000 --repeats 1 --workers 1,2

It starts its own local Ray cluster (``ray start --head --block --num-cpus=N`` on free ports, in its own
temp dir, stopped at the end; the Ray runs reach it by address, as on a multi-machine cluster), then runs
``rlx train algo=a3c env=cartpole`` for every (backend, workers) alternating, each a fresh process with
one torch thread, no periodic eval (one 1-episode eval at the end) and no checkpoints. Reported per
configuration: the median of the runs' ``sps`` (summary.json: env steps / wall time of the run, Ray
connection and actor start-up included) and, for Ray, the staleness the run recorded (mean, max,
histogram: updates applied between a worker's parameter fetch and the application of its gradient).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.local_ray import start_head, stop_head  # noqa: E402


def train(backend: str, workers: int, steps: int, seed: int, address: str, root: Path) -> dict:
    run = Path(tempfile.mkdtemp(prefix=f"{backend}{workers}-", dir=root))
    args = ["train", "algo=a3c", "env=cartpole", f"algo.backend={backend}", f"algo.num_workers={workers}",
            f"total_steps={steps}", f"seed={seed}", "eval.every=0", "eval.episodes=1", "checkpoint.every=0",
            "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "torch_threads=1",
            f"hydra.run.dir={run}", "overwrite=true"]
    if backend == "ray":
        args.append(f"algo.ray_address={address}")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "from rlx.app.cli import main; main()", *args], cwd=root,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{backend} x{workers} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    s = json.loads((run / "summary.json").read_text())
    shutil.rmtree(run, ignore_errors=True)
    return {"sps": s["sps"], "process_wall_s": wall, "staleness": s.get("staleness"), "worker_updates": s.get("worker_updates")}


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ray-cpus", type=int, default=2, help="--num-cpus of the local Ray head")
    ap.add_argument("--json", type=Path, default=None, help="also write every run's numbers here")
    a = ap.parse_args()
    counts = [int(w) for w in a.workers.split(",")]
    configs = [(b, w) for w in counts for b in ("processes", "ray")]
    root = Path(tempfile.mkdtemp(prefix="rlxbench"))
    temp = tempfile.mkdtemp(prefix="rlxray", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 chars
    print(f"# {platform.node()}: {os.cpu_count()} cores, load average before: {load_average()}", flush=True)
    head, address = start_head(a.ray_cpus, temp)
    runs: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    try:
        for rep in range(a.repeats):
            order = configs if rep % 2 == 0 else configs[::-1]  # alternate, so drifting load hits all alike
            for backend, workers in order:
                r = train(backend, workers, a.steps, a.seed, address, root)
                runs[(backend, workers)].append(r)
                st = r["staleness"] or {}
                print(f"  repeat {rep}: {backend:9s} x{workers}: {r['sps']:7.0f} steps/s"
                      + (f", staleness mean {st['mean']:.3f} max {st['max']}" if st else "")
                      + f"  (load {load_average()})", flush=True)
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nA3C CartPole, {a.steps} steps per run, {a.repeats} alternating repeats, seed {a.seed}; "
          f"load average after: {load_average()}\n")
    print("| backend | workers | steps/s (median) | runs | staleness mean; max | staleness histogram (share of updates) |")
    print("|---|---|---|---|---|---|")
    for backend, workers in configs:
        rs = runs[(backend, workers)]
        sps = statistics.median(r["sps"] for r in rs)
        cell, hist_cell = "—", "—"
        if backend == "ray":
            hist: Counter[int] = Counter()
            for r in rs:
                hist.update({int(k): v for k, v in r["staleness"]["histogram"].items()})
            n = sum(hist.values())
            mean = sum(k * v for k, v in hist.items()) / n
            cell = f"{mean:.3f}; {max(r['staleness']['max'] for r in rs)}"
            hist_cell = ", ".join(f"{k}: {100 * v / n:.1f}%" for k, v in sorted(hist.items()) if 100 * v / n >= 0.05)
        each = ", ".join(f"{r['sps']:.0f}" for r in rs)
        print(f"| `{backend}` | {workers} | {sps:.0f} | {each} | {cell} | {hist_cell} |")
    if a.json:
        a.json.write_text(json.dumps({f"{b}x{w}": rs for (b, w), rs in runs.items()}, indent=1))


if __name__ == "__main__":
    main()
