#!/usr/bin/env python
"""One PPO-sized update for a population of K members: stacked (one process-wide update) vs K sequential.

    python scripts/bench_population_update.py                        # K = 1, 4, 16, 64; 3 alternating repeats
    python scripts/bench_population_update.py --ks 1,4 --updates 50 --markdown benchmarks/population.md

The update (PPO CartPole-sized): actor and critic MLPs 4 -> 64 -> 64 -> {2, 1}, tanh, batch 256, clipped
surrogate + 0.5 * value loss, per-member advantage normalization, gradient clipping at 0.5 (per member),
Adam lr 3e-4 (a different lr per member in the stack).

- sequential: K ordinary members as rlx runs one today (rlx.networks.mlp with its fused MLP node, one flat
  parameter group, fused Adam, clip_grad_norm_), updated one after the other;
- stacked: rlx.networks.stacked.StackedMLP for both networks, one [K, P] buffer (rlx.optim.stacked),
  clip_grad_norm_stacked_ and StackedAdam: one update for all K members.

Only ratios are reported (the machine may be shared): stacked K / one member (what a population of K costs
in units of one plain update) and sequential K / stacked K (the speedup over K separate updates).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlx.networks.flat import flatten_parameters, gather_flat_grads  # noqa: E402
from rlx.networks.mlp import mlp  # noqa: E402
from rlx.networks.stacked import StackedMLP  # noqa: E402
from rlx.optim.stacked import StackedAdam, clip_grad_norm_stacked_, gather_stacked_grads, stack_parameters  # noqa: E402

OBS, ACTIONS, HIDDEN, BATCH, CLIP_EPS, MAX_NORM, LR = 4, 2, (64, 64), 256, 0.2, 0.5, 3e-4


def ppo_loss(logits, values, actions, old_log_probs, advantages, returns):
    """Clipped surrogate + 0.5 * value MSE, every tensor with a leading member dim [K, B, ...];
    advantages normalized per member; the sum over members keeps each member's gradient its own."""
    log_probs = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    adv = (advantages - advantages.mean(1, keepdim=True)) / (advantages.std(1, keepdim=True) + 1e-8)
    ratio = torch.exp(log_probs - old_log_probs)
    policy = -torch.min(ratio * adv, ratio.clamp(1 - CLIP_EPS, 1 + CLIP_EPS) * adv).mean(1)
    value = (values.squeeze(-1) - returns).pow(2).mean(1)
    return (policy + 0.5 * value).sum()


def batch(k: int, gen: torch.Generator):
    return (torch.randn(k, BATCH, OBS, generator=gen), torch.randint(0, ACTIONS, (k, BATCH), generator=gen),
            -torch.rand(k, BATCH, generator=gen), torch.randn(k, BATCH, generator=gen), torch.randn(k, BATCH, generator=gen))


class Sequential:
    """K members, each as a plain rlx run updates it."""

    def __init__(self, k: int):
        self.members = []
        for _ in range(k):
            actor, critic = mlp(OBS, ACTIONS, HIDDEN, "tanh", 0.01), mlp(OBS, 1, HIDDEN, "tanh", 1.0)
            flat = flatten_parameters([*actor.parameters(), *critic.parameters()])
            self.members.append((actor, critic, torch.optim.Adam([flat], lr=LR, eps=1e-5, fused=True)))

    def update(self, data) -> None:
        obs, actions, old_lp, adv, ret = data
        for k, (actor, critic, opt) in enumerate(self.members):
            opt.zero_grad(set_to_none=True)
            loss = ppo_loss(actor(obs[k])[None], critic(obs[k])[None], actions[k][None], old_lp[k][None],
                            adv[k][None], ret[k][None])
            loss.backward()
            gather_flat_grads(opt)
            nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], MAX_NORM, foreach=True)
            opt.step()


class Stacked:
    """K members as one stacked population update."""

    def __init__(self, k: int):
        actors = [mlp(OBS, ACTIONS, HIDDEN, "tanh", 0.01) for _ in range(k)]
        critics = [mlp(OBS, 1, HIDDEN, "tanh", 1.0) for _ in range(k)]
        self.actor, self.critic = StackedMLP.from_mlps(actors), StackedMLP.from_mlps(critics)
        self.flat = stack_parameters([*self.actor.parameters(), *self.critic.parameters()])
        self.opt = StackedAdam(self.flat, lr=torch.linspace(1e-4, 1e-3, k), eps=1e-5)
        self.max_norm = torch.full((k,), MAX_NORM)

    def update(self, data) -> None:
        obs, actions, old_lp, adv, ret = data
        self.opt.zero_grad()
        ppo_loss(self.actor(obs), self.critic(obs), actions, old_lp, adv, ret).backward()
        gather_stacked_grads(self.flat)
        clip_grad_norm_stacked_(self.flat.grad, self.max_norm)
        self.opt.step()


def seconds_per_update(model, k: int, updates: int) -> float:
    gen = torch.Generator().manual_seed(0)
    data = [batch(k, gen) for _ in range(8)]
    for i in range(3):  # warm-up (allocator, first-call dispatch)
        model.update(data[i % 8])
    t = time.perf_counter()
    for i in range(updates):
        model.update(data[i % 8])
    return (time.perf_counter() - t) / updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="1,4,16,64")
    ap.add_argument("--updates", type=int, default=60, help="timed updates per measurement (of the stack; "
                    "the sequential run does max(updates // K, 5) rounds of K)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ks = [int(k) for k in args.ks.split(",")]
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):  # alternating: every configuration once per repeat
        single = seconds_per_update(Sequential(1), 1, args.updates)
        times.setdefault(("one", 1), []).append(single)
        for k in ks:
            times.setdefault(("stacked", k), []).append(seconds_per_update(Stacked(k), k, args.updates))
            times.setdefault(("sequential", k), []).append(seconds_per_update(Sequential(k), k, max(args.updates // k, 5)))
    one = statistics.median(times[("one", 1)])
    lines = ["| K | stacked K / one member | sequential K / one member | sequential / stacked |", "|---:|---:|---:|---:|"]
    for k in ks:
        st, sq = statistics.median(times[("stacked", k)]), statistics.median(times[("sequential", k)])
        lines.append(f"| {k} | {st / one:.2f}x | {sq / one:.2f}x | {sq / st:.2f}x |")
    text = (f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {platform.machine()}, {os.cpu_count()} cores "
            f"(shared with other jobs), Python {platform.python_version()}, torch {torch.__version__}, "
            f"{args.threads} torch thread(s), median of {args.repeats} alternating repeats.\n"
            f"Command: `python scripts/bench_population_update.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(args.markdown.read_text() + "\n" + text if args.markdown.exists() else text)


if __name__ == "__main__":
    main()
