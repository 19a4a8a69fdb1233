#!/usr/bin/env python
"""rlx vs Stable-Baselines3 from pixels, in one invocation: PPO steps/s on Breakout and Atari replay-buffer RSS.

    python scripts/bench_pixels.py --sb3-python /tmp/sb3venv/bin/python      # 8,192 steps (8 PPO rollouts), 2 alternating repeats
    python scripts/bench_pixels.py --sb3-python ... --markdown benchmarks/results.md --append

SB3 runs in its own interpreter (``--sb3-python``: a venv with stable-baselines3 and ale-py), never
imported by rlx. Every measurement is a fresh process with one torch thread (OMP/MKL 1 too).

PPO: ``ALE/Breakout-v5`` (sticky actions 0.25, frameskip 1 in the env, frame skip 4 in the preprocessing),
8 envs, RL-Zoo's Atari preset on both sides: rlx ``algo=ppo env=breakout`` (tuned/ppo_breakout.yaml,
NatureCNN) against SB3 ``make_atari_env`` + ``VecFrameStack(4)`` + ``PPO("CnnPolicy")`` with RL-Zoo's
``atari`` hyperparameters; alternating, steps/s of the training alone (rlx summary.json ``sps``, SB3
``learn()``; rlx's final evaluation, one stochastic episode here, is outside its timing).

Replay RSS: a 100k-transition buffer of (4, 84, 84) uint8 frame stacks filled by 8 envs with synthetic
frames (stacks that shift one frame per step as FrameStackObservation's, episodes of 500 steps, staggered);
reported: VmRSS after filling minus VmRSS before building the buffer, and the buffer's own bytes as computed.
rlx: ``make_replay_buffer`` as the off-policy loop builds it for ``env=breakout`` (FrameStackReplayBuffer)
and without frame sharing (ImageReplayBuffer); SB3: ``ReplayBuffer`` with and without
``optimize_memory_usage``.
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
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
CAPACITY = 100_000

SB3_PPO = """
import json, sys, time
import ale_py, gymnasium as gym, torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
torch.set_num_threads(1)
gym.register_envs(ale_py)
steps, seed = int(sys.argv[1]), int(sys.argv[2])
lin = lambda v: (lambda p: p * v)
env = VecFrameStack(make_atari_env("ALE/Breakout-v5", n_envs=8, seed=seed, env_kwargs={"frameskip": 1}), n_stack=4)
model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=lin(2.5e-4), clip_range=lin(0.1),
            vf_coef=0.5, ent_coef=0.01, seed=seed, device="cpu")
t = time.perf_counter()
model.learn(total_timesteps=steps)
wall = time.perf_counter() - t
print(json.dumps({"sps": steps / wall, "wall_s": wall}))
"""

# Synthetic Atari steps for the replay measurement (numpy only, so both interpreters run it): per env a frame
# sequence from a pool of random 84x84 frames; observations are stacks of its last 4 frames; an episode ends
# every 500 steps (staggered over the envs), its final observation in info["final_obs"] as gymnasium's.
FILL = """
import json, sys
import numpy as np
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def steps(n_envs, n_steps, k=4, ep_len=500):
    pool = np.random.default_rng(0).integers(0, 256, (251, 84, 84), dtype=np.uint8)
    frame = lambda i, t: pool[(3 * t + 17 * i) % 251]
    start = lambda i, t: np.stack([frame(i, t)] * k)
    obs = np.stack([start(i, 0) for i in range(n_envs)])
    actions, rewards = np.zeros(n_envs, np.int64), np.ones(n_envs, np.float32)
    for t in range(n_steps):
        reached = np.concatenate([obs[:, 1:], np.stack([frame(i, t + 1) for i in range(n_envs)])[:, None]], axis=1)
        done = np.array([(t + 1 + 61 * i) % ep_len == 0 for i in range(n_envs)])
        nxt, info = reached.copy(), {}
        if done.any():
            info = {"final_obs": np.array([reached[i] if done[i] else None for i in range(n_envs)], dtype=object),
                    "_final_obs": done}
            for i in np.flatnonzero(done):
                nxt[i] = start(i, t + 1000)
        yield obs, actions, reached, nxt, rewards, done, np.zeros(n_envs, bool), info
        obs = nxt
n, cap = 8, int(sys.argv[2])
"""

RLX_FILL = FILL + """
import gymnasium as gym, torch
from rlx.buffers.replay import make_replay_buffer
torch.set_num_threads(1)
before = rss()
buf = make_replay_buffer(cap, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), (), True, torch.device("cpu"),
                         frame_stack=4 if sys.argv[1] == "frames" else None)
for obs, a, reached, nxt, r, term, trunc, info in steps(n, cap // n):
    buf.add(obs, a, nxt, r, term, trunc, info)
assert len(buf) == cap
print(json.dumps({"rss": rss() - before, "computed": buf.bytes_per_transition * cap, "kind": type(buf).__name__}))
"""

SB3_FILL = FILL + """
import gymnasium as gym, torch
from stable_baselines3.common.buffers import ReplayBuffer
torch.set_num_threads(1)
before = rss()
optimize = sys.argv[1] == "optimize"
buf = ReplayBuffer(cap, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4), device="cpu", n_envs=n,
                   optimize_memory_usage=optimize, handle_timeout_termination=not optimize)
for obs, a, reached, nxt, r, term, trunc, info in steps(n, cap // n):
    buf.add(obs, reached, a[:, None], r, term, [{}] * n)
assert buf.full or buf.pos == 0
arrays = [buf.observations, buf.actions, buf.rewards, buf.dones, buf.timeouts] + ([] if optimize else [buf.next_observations])
print(json.dumps({"rss": rss() - before, "computed": sum(x.nbytes for x in arrays), "kind": "ReplayBuffer"}))
"""


def run_json(cmd: list[str], what: str, **kw) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True, env=kw.pop("env", ENV), **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_rlx_ppo(steps: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "algo=ppo", "env=breakout",
               f"total_steps={steps}", f"seed={seed}", "eval.every=0", "eval.episodes=1", "eval.deterministic=false",
               "checkpoint.every=0", "logger.progress=false", "logger.wandb.mode=disabled", "torch_threads=1",
               "device=cpu", f"hydra.run.dir={tmp}/run"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"rlx PPO Breakout failed: {r.stderr.strip()[-800:]}")
        s = json.loads(Path(tmp, "run", "summary.json").read_text())
    return {"sps": s["sps"], "wall_s": s["wall_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sb3-python", default=sys.executable, help="interpreter with stable-baselines3 and ale-py")
    ap.add_argument("--steps", type=int, default=8_192)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--capacity", type=int, default=CAPACITY)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: ppo, memory")
    ap.add_argument("--markdown", type=Path, help="also write the tables (with machine info) to this file")
    ap.add_argument("--append", action="store_true", help="append to --markdown instead of replacing it")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = []

    if "ppo" not in skip:
        rlx_runs, sb3_runs = [], []
        for i in range(args.repeats):  # alternate so drifts in machine load hit both equally
            rlx_runs.append(run_rlx_ppo(args.steps, args.seed))
            sb3_runs.append(run_json([args.sb3_python, "-c", SB3_PPO, str(args.steps), str(args.seed)], "SB3 PPO Breakout"))
            print(f"PPO Breakout repeat {i + 1}/{args.repeats}: rlx {rlx_runs[-1]['sps']:.0f} sps, "
                  f"sb3 {sb3_runs[-1]['sps']:.0f} sps", file=sys.stderr, flush=True)
        rlx_sps, sb3_sps = (statistics.median(r["sps"] for r in runs) for runs in (rlx_runs, sb3_runs))
        each = "; ".join(name + " " + ", ".join(f"{r['sps']:,.0f}" for r in runs)
                         for name, runs in (("rlx", rlx_runs), ("SB3", sb3_runs)))
        out += ["| PPO ALE/Breakout-v5, 8 envs | env steps | rlx steps/s | SB3 steps/s | rlx / SB3 |", "|---|---:|---:|---:|---:|",
                f"| RL-Zoo Atari preset, NatureCNN | {args.steps:,} | {rlx_sps:,.0f} | {sb3_sps:,.0f} | {rlx_sps / sb3_sps:.2f}x |",
                "", f"Median of {args.repeats} alternating runs each (per run: {each}).", ""]

    if "memory" not in skip:
        cases = [("rlx `make_replay_buffer` (FrameStackReplayBuffer, as for env=breakout)", [sys.executable], RLX_FILL, "frames"),
                 ("rlx ImageReplayBuffer (stacks stored whole, no frame sharing)", [sys.executable], RLX_FILL, "whole"),
                 ("SB3 ReplayBuffer, optimize_memory_usage=True", [args.sb3_python], SB3_FILL, "optimize"),
                 ("SB3 ReplayBuffer, optimize_memory_usage=False", [args.sb3_python], SB3_FILL, "plain")]
        out += [f"| replay buffer, {args.capacity:,} Atari transitions (4x84x84 uint8) | RSS growth | computed | bytes/transition |",
                "|---|---:|---:|---:|"]
        for name, py, code, mode in cases:
            d = run_json([*py, "-c", code, mode, str(args.capacity)], name, env={**ENV, "PYTHONPATH": str(REPO)}, cwd=REPO)
            print(f"{name}: RSS +{d['rss'] / 1e9:.2f} GB (computed {d['computed'] / 1e9:.2f} GB)", file=sys.stderr, flush=True)
            out.append(f"| {name} | {d['rss'] / 1e9:.2f} GB | {d['computed'] / 1e9:.2f} GB | {d['computed'] / args.capacity:,.0f} |")
        out += ["", "RSS growth = VmRSS after filling minus VmRSS before building the buffer, each in a fresh process "
                "(8 envs, synthetic shifting frame stacks, episodes of 500 steps); computed = the buffer's own arrays.", ""]

    table = "\n".join(out)
    print(table)
    if args.markdown:
        import torch

        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine}, torch {torch.__version__}, one torch thread, "
                  f"seed {args.seed}.\nCommand: `python scripts/bench_pixels.py {' '.join(sys.argv[1:])}`\n\n")
        if args.append and args.markdown.exists():
            args.markdown.write_text(args.markdown.read_text() + "\n" + header + table)
        else:
            args.markdown.write_text("# rlx pixels benchmark\n\n" + header + table)


if __name__ == "__main__":
    main()
