#!/usr/bin/env python
"""What W&B costs the default run (issue 27): ``rlx train algo=ppo env=cartpole total_steps=S`` with
``logger.wandb.mode=offline`` (the default) vs ``disabled``, alternating, each a fresh process from the command
line, one torch thread.

    python scripts/bench_wandb.py                      # S = 256 and 20,000, 3 repeats
    python scripts/bench_wandb.py --steps 256 --repeats 5 --out benchmarks

Reported per S and mode: the whole process's wall (start-up to exit) and the run's own training wall
(``summary.json``'s ``wall_s``: the training loop, which a W&B holding the GIL slows), medians, and the
offline - disabled differences. Writes ``OUT/wandb.{json,md}`` with ``--out``.
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
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("WANDB_MODE", None)


def one_run(steps: int, mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "algo=ppo", "env=cartpole",
               f"total_steps={steps}", f"logger.wandb.mode={mode}", "logger.progress=false", "torch_threads=1",
               f"hydra.run.dir={tmp}/run"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-600:]}")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {"process_s": wall, "train_s": float(summary["wall_s"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="256,20000", help="comma-separated total_steps values")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="where wandb.json/wandb.md go")
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    load0 = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {}
    for i in range(args.repeats):
        for s in steps:
            for mode in (("offline", "disabled") if i % 2 == 0 else ("disabled", "offline")):
                r = one_run(s, mode)
                runs.setdefault(f"{mode}{s}", []).append(r)
                print(f"repeat {i + 1}/{args.repeats} steps {s} {mode}: process {r['process_s']:.2f} s, training {r['train_s']:.2f} s",
                      file=sys.stderr, flush=True)

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    lines = ["# What W&B costs the default run: `rlx train algo=ppo env=cartpole`, offline (the default) vs disabled", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}; load average {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
             f"one thread; median of {args.repeats} alternating repeats. "
             f"Command: `python scripts/bench_wandb.py {' '.join(sys.argv[1:])}`.", "",
             "| total_steps | process s offline | process s disabled | difference "
             "| training s offline | training s disabled | difference |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in steps:
        po, pd = med(f"offline{s}", "process_s"), med(f"disabled{s}", "process_s")
        to, td = med(f"offline{s}", "train_s"), med(f"disabled{s}", "train_s")
        lines.append(f"| {s:,} | {po:.2f} | {pd:.2f} | {po - pd:+.2f} | {to:.2f} | {td:.2f} | {to - td:+.2f} |")
    lines += ["", "process s: the whole `rlx train` process; training s: the run's `summary.json` `wall_s`. W&B runs in a child "
              "process (rlx/rundir/wandb_process.py); the run's end waits until W&B has written every record, which on a run "
              "shorter than W&B's own start-up (~1 s) is the rest of the process difference."]
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "wandb.json").write_text(json.dumps({"steps": steps, "repeats": args.repeats, "runs": runs}, indent=1) + "\n")
        (args.out / "wandb.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
