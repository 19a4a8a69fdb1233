#!/usr/bin/env python
"""``compile=true`` vs ``compile=false`` (issue 27): the update step of SAC, TD3 and DDPG, eager against
``torch.compile``'d, with each algorithm's own default config (Pendulum-v1's sizes, batch 256).

    python scripts/bench_compile.py                          # sac,td3,ddpg; K = 1; 200 updates; 3 alternating repeats
    python scripts/bench_compile.py --algos sac --ks 1,8 --device cuda --markdown benchmarks/compile.md

Each repeat builds both algorithms in this process as a run builds them (``rlx.train.run.build_algorithm``)
and, taking turns, times the first 4 updates (the compiled one's include compiling: in a fresh inductor
cache dir for the first repeat, "cold", and the same dir after, "warm") and then the mean of ``--updates``
more on the same random minibatches. The break-even is the number of updates after which compiling has
paid for itself: compile time / (eager - compiled) per update; "never" where compiled is not faster.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="rlx-bench-inductor-"))
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlx.buffers.replay import Transitions  # noqa: E402
from rlx.config.compose import compose_config  # noqa: E402
from rlx.train.run import build_algorithm, parse_settings, prepare_process  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(algo: str, k: int, compiled: bool, device: str, threads: int):
    settings = [parse_settings(compose_config([f"algo={algo}", "env=pendulum", f"seed={seed}", f"device={device}",
                                               f"torch_threads={threads}", f"compile={str(compiled).lower()}"]))
                for seed in range(k)]
    dev, spec = prepare_process(settings[0])
    return build_algorithm(settings if k > 1 else settings[0], spec, dev), dev, settings[0].algo.batch_size


def batches(k: int, b: int, n: int, device: torch.device) -> list[Transitions]:
    g = torch.Generator().manual_seed(0)
    lead = (k, b) if k > 1 else (b,)
    out = []
    for _ in range(n):
        out.append(Transitions(obs=torch.randn(*lead, 3, generator=g), actions=torch.rand(*lead, 1, generator=g) * 4 - 2,
                               rewards=torch.randn(*lead, generator=g), next_obs=torch.randn(*lead, 3, generator=g),
                               terminated=torch.zeros(*lead)))
    return [Transitions(*(t.to(device) for t in tr)) for tr in out]


def time_updates(algo_obj, data: list[Transitions], device: torch.device) -> tuple[float, float]:
    """(the first 4 updates' s, mean of the rest in us). TD3 and DDPG update their actor every
    ``policy_delay`` (2) updates, a second compiled variant: the first 4 updates compile both."""
    _sync(device)
    t0 = time.perf_counter()
    for b in data[:4]:
        algo_obj.update(b, 0.0)
    _sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in data[4:]:
        algo_obj.update(b, 0.0)
    _sync(device)
    return first, (time.perf_counter() - t0) / (len(data) - 4) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default="sac,td3,ddpg")
    ap.add_argument("--ks", default="1", help="population sizes")
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--markdown", type=Path, help="also write the table (with the machine) here")
    a = ap.parse_args()
    rows, raw = [], []
    for algo in a.algos.split(","):
        for k in map(int, a.ks.split(",")):
            eager_us, comp_us, cold, warm = [], [], [], []
            for rep in range(a.repeats):
                order = (False, True) if rep % 2 == 0 else (True, False)
                for compiled in order:
                    torch._dynamo.reset()
                    obj, dev, b = build(algo, k, compiled, a.device, a.threads)
                    first, per = time_updates(obj, batches(k, b, a.updates + 4, dev), dev)
                    raw.append({"algo": algo, "k": k, "compiled": compiled, "repeat": rep, "first_s": first, "per_update_us": per})
                    print(json.dumps(raw[-1]), flush=True)
                    if compiled:
                        comp_us.append(per)
                        (cold if rep == 0 else warm).append(first)
                    else:
                        eager_us.append(per)
            e, c = statistics.median(eager_us), statistics.median(comp_us)
            compile_s = statistics.median(warm) if warm else cold[0]
            even = f"{compile_s / ((e - c) * 1e-6):,.0f}" if c < e else "never"
            rows.append(f"| {algo} | {k} | {e:,.0f} | {c:,.0f} | {e / c:.2f}x | {cold[0]:.1f} | "
                        f"{statistics.median(warm) if warm else float('nan'):.1f} | {even} |")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, device {a.device}, "
               f"{a.threads} thread(s); load average {os.getloadavg()[0]:.2f} at the end")
    table = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine}.",
        f"Command: `python scripts/bench_compile.py {' '.join(sys.argv[1:])}`; median of {a.repeats} alternating repeats.",
        "",
        "| algo | K | eager us/update | compiled us/update | eager / compiled | first 4 updates s, cold cache "
        "| first 4 updates s, warm cache | break-even, updates (warm) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|", *rows])
    print(table)
    if a.markdown:
        a.markdown.write_text("# compile=true vs compile=false\n\n" + table + "\n")
    if a.json:
        a.json.write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
