#!/usr/bin/env python
"""Where a PPO CartPole population's time goes (issue 27: "remove what grows with K outside the batched math").

    python scripts/profile_population.py                  # K = 64, 20,000 steps per member, the micro-benchmarks
    python scripts/profile_population.py --k 16 --steps 20000 --out benchmarks

One thread. Three parts, printed as one markdown report (``OUT/population_profile.md`` with ``--out``):

1. The population under cProfile (RL-Zoo's CartPole preset, as ``bench.py --population-vs-rejax``): the share
   of the training loop in the PPO update (the batched math) vs acting and env stepping, and the top C calls.
2. One minibatch's forward + backward of both heads (4-64-64-{2,1} tanh, batch 256, the eager stacked kernels)
   at K = 1, 16 and 64, next to the bare batched matmuls it contains (their floor on this CPU).
3. The same forward + backward ``torch.compile``d (inductor), at the largest K: whether fusing the elementwise
   passes pays on this CPU.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
QUIET = ["eval.every=0", "checkpoint.every=0", "logger.progress=false", "logger.wandb.mode=disabled",
         "logger.tensorboard=false", "torch_threads=1", "device=cpu"]


def best_ms(f, n: int = 20, rounds: int = 5) -> float:
    for _ in range(3):
        f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t) / n * 1e3)
    return min(times)


def loop_profile(k: int, steps: int) -> list[str]:
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job

    cfgs = [compose_config(["algo=ppo", "env=cartpole", f"total_steps={steps}", f"seed={i // 3}",
                            f"algo.clip_eps={(0.1, 0.2, 0.3)[i % 3]}", *QUIET]) for i in range(k)]
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        prof.enable()
        train_job(cfgs, [f"{tmp}/m{i}" for i in range(k)])
        prof.disable()
        wall = time.perf_counter() - t
    stats = pstats.Stats(prof)
    cum = {f"{Path(f).name}:{fn}": v[3] for (f, _, fn), v in stats.stats.items()}  # type: ignore[attr-defined]

    def share(name: str) -> str:
        return f"{cum.get(name, 0.0):.1f} s"

    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    top = [line for line in out.getvalue().splitlines() if line.strip()][-13:]
    return [f"## 1. K = {k}, {steps:,} steps per member, under cProfile: {wall:.1f} s", "",
            f"training loop {share('on_policy.py:run')}, of which the PPO update {share('ppo.py:update')} "
            f"(minibatch forward {share('common.py:evaluate_actions')}, backward + Adam {share('common.py:gradient_step')}) "
            f"and acting {share('common.py:explore')}; the rest is env stepping, rollout storage and bookkeeping.", "",
            "```", *top, "```", ""]


def kernels(ks: list[int], compile_k: int) -> list[str]:
    from rlx.networks.stacked import StackedMLP

    lines = ["## 2. One minibatch, forward + backward of both heads (batch 256), eager", "",
             "| K | forward + backward ms | its batched matmuls alone ms | 64x64 matmul GFLOP/s |", "|---:|---:|---:|---:|"]
    b = 256
    for k in ks:
        actor, critic = StackedMLP(4, 2, [64, 64], "tanh", k), StackedMLP(4, 1, [64, 64], "tanh", k)
        x = torch.randn(k, b, 4)

        def step(a=actor, c=critic, x=x) -> None:
            (a(x).logsumexp(-1).sum() + c(x).sum()).backward()

        h, w = torch.randn(k, b, 64), torch.randn(k, 64, 64)
        x4, w4, g2 = x, torch.randn(k, 4, 64), torch.randn(k, b, 2)
        mm64 = best_ms(lambda h=h, w=w: torch.bmm(h, w))
        # per head: 64x64 forward, dW and dh (3), first layer forward and dW (2), the narrow last layer (~3 small)
        floor = 2 * (3 * mm64 + 2 * best_ms(lambda x4=x4, w4=w4: torch.bmm(x4, w4))
                     + 3 * best_ms(lambda h=h, g2=g2: torch.bmm(h.transpose(1, 2), g2)))
        lines.append(f"| {k} | {best_ms(step):.2f} | {floor:.2f} | {2 * k * b * 64 * 64 / mm64 / 1e6:.0f} |")
    k = compile_k
    actor, critic = StackedMLP(4, 2, [64, 64], "tanh", k), StackedMLP(4, 1, [64, 64], "tanh", k)
    x = torch.randn(k, b, 4)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return actor(x).logsumexp(-1).sum() + critic(x).sum()

    compiled = torch.compile(loss, dynamic=False)
    t = time.perf_counter()
    compiled(x).backward()
    compile_s = time.perf_counter() - t
    eager, comp = best_ms(lambda: loss(x).backward()), best_ms(lambda: compiled(x).backward())
    lines += ["", f"## 3. The same at K = {k}, torch.compile (inductor): {comp:.2f} ms vs eager {eager:.2f} ms "
              f"({eager / comp:.2f}x; compile {compile_s:.1f} s)", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--out", type=Path, help="where population_profile.md goes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    lines = [f"# Where a PPO CartPole population's time goes (K = {args.k})", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} "
             f"({platform.processor() or 'cpu'}), {os.cpu_count()} cores, torch {torch.__version__}, one thread; load "
             f"{load0[0]:.2f}. Command: `python scripts/profile_population.py {' '.join(sys.argv[1:])}`.", ""]
    lines += loop_profile(args.k, args.steps)
    lines += kernels(sorted({1, 16, args.k}), args.k)
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "population_profile.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
