"""TRPO: rlx vs sb3-contrib on the same task, hyperparameters (RL-Zoo's), steps and seed, alternating
in one invocation, one torch thread each. sb3-contrib is never an rlx dependency: it runs from its own
venv (``--sb3-python``), e.g. ``python3 -m venv /tmp/sb3venv && /tmp/sb3venv/bin/pip install torch==2.13.0
sb3-contrib``.

    python benchmarks/trpo_sb3.py --sb3-python /tmp/sb3venv/bin/python [--tasks cartpole pendulum] [--seed 0]

Prints one JSON line per run and a markdown table (steps/s, final deterministic eval over 10 episodes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TASKS = {"cartpole": ("CartPole-v1", 100_000), "pendulum": ("Pendulum-v1", 100_000)}

SB3 = r'''
import json, sys, time
import gymnasium as gym, torch
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
torch.set_num_threads(1)
env_id, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if env_id == "CartPole-v1":  # RL-Zoo hyperparams/trpo.yml
    kw = dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99, learning_rate=1e-3, n_critic_updates=20)
else:  # Pendulum-v1, RL-Zoo's without gSDE (rlx has none)
    kw = dict(n_steps=1024, gamma=0.9, n_critic_updates=15)
model = TRPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=seed), seed=seed, device="cpu", **kw)
t = time.time()
model.learn(total_timesteps=steps)
wall = time.time() - t
mean, std = evaluate_policy(model, gym.make(env_id), n_eval_episodes=10, deterministic=True)
print(json.dumps(dict(lib="sb3-contrib", env=env_id, steps=steps, seed=seed, wall_s=round(wall, 2),
                      sps=round(model.num_timesteps / wall, 1), eval_mean=round(float(mean), 2))))
'''


def run_rlx(env: str, steps: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        args = [f"algo=trpo", f"env={env}", f"total_steps={steps}", f"seed={seed}", "eval.every=0", "eval.episodes=10",
                "checkpoint.every=0", "logger.progress=false", "logger.wandb.mode=disabled", "torch_threads=1",
                f"hydra.run.dir={d}/run"]
        subprocess.run([sys.executable, "-c", "from rlx.app.cli import main; main()", "train", *args], check=True,
                       capture_output=True, text=True)
        s = json.loads((Path(d) / "run" / "summary.json").read_text())
    return dict(lib="rlx", env=TASKS[env][0], steps=s["env_steps"], seed=seed, wall_s=round(s["wall_s"], 2),
                sps=round(s["sps"], 1), eval_mean=round(s["eval_return_mean"], 2))


def run_sb3(python: str, env: str, steps: int, seed: int) -> dict:
    out = subprocess.run([python, "-c", SB3, TASKS[env][0], str(steps), str(seed)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sb3-python", required=True)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="override each task's step budget")
    a = ap.parse_args()
    rows = []
    for task in a.tasks:
        steps = a.steps or TASKS[task][1]
        r, s = run_rlx(task, steps, a.seed), run_sb3(a.sb3_python, task, steps, a.seed)
        print(json.dumps(r), json.dumps(s), sep="\n", flush=True)
        rows.append((task, steps, r, s))
    print("\n| task | steps | rlx steps/s | sb3-contrib steps/s | rlx / sb3 | rlx return | sb3-contrib return |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task, steps, r, s in rows:
        print(f"| TRPO {TASKS[task][0]} | {steps:,} | {r['sps']:,.0f} | {s['sps']:,.0f} | {r['sps'] / s['sps']:.2f}x | "
              f"{r['eval_mean']:.1f} | {s['eval_mean']:.1f} |")


if __name__ == "__main__":
    main()
