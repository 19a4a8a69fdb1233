"""Peer baseline: sb3-contrib's RecurrentPPO with RL-Zoo's preset (hyperparams/ppo_lstm.yml) for CartPoleNoVel-v1.
Usage: python sb3_contrib_baseline.py ppo CartPoleNoVel-v1 STEPS SEED  -> prints JSON with wall, sps, eval return.

The env and its wrapping are RL-Zoo's: CartPoleNoVel-v1 = gym.make("CartPole-v1") in MaskVelocityWrapper
(rl_zoo3/import_envs.py, rl_zoo3/wrappers.py: x_dot and theta_dot multiplied by 0), 8 envs in a DummyVecEnv,
``normalize: True`` = VecNormalize(gamma=0.98) (observations and rewards; the eval env keeps the training
env's observation statistics, training=False, norm_reward=False, as rl_zoo3/exp_manager.py's _maybe_normalize).
Runs in its own venv (scripts/peers/bench_peers.py: torch==2.13.0, stable-baselines3, sb3-contrib)."""
import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize


class MaskVelocityWrapper(gym.ObservationWrapper):
    """RL-Zoo's (rl_zoo3/wrappers.py), for CartPole-v1: observation * [1, 0, 1, 0]."""

    def __init__(self, env):
        super().__init__(env)
        self.mask = np.ones_like(env.observation_space.sample())
        self.mask[[1, 3]] = 0.0

    def observation(self, observation):
        return observation * self.mask


def make_novel(render_mode=None):
    return MaskVelocityWrapper(gym.make("CartPole-v1", render_mode=render_mode))


gym.register(id="CartPoleNoVel-v1", entry_point=make_novel)  # as rl_zoo3/import_envs.py (no extra time limit)

torch.set_num_threads(1)
algo, env_id, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if (algo, env_id) != ("ppo", "CartPoleNoVel-v1"):
    raise SystemExit(f"no config for {algo} {env_id}")


def lin(v):
    return lambda progress_remaining: progress_remaining * v


env = VecNormalize(make_vec_env(env_id, n_envs=8, seed=seed), gamma=0.98)
model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                     ent_coef=0.0, learning_rate=lin(1e-3), clip_range=lin(0.2), seed=seed, device="cpu",
                     policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                                        enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])))
t = time.time()
model.learn(total_timesteps=steps)
wall = time.time() - t
eval_env = VecNormalize(DummyVecEnv([lambda: gym.make(env_id)]), training=False, norm_reward=False, gamma=0.98)
eval_env.obs_rms = env.obs_rms
eval_env.seed(seed + 10_000)
mean, std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
print(json.dumps(dict(lib="sb3-contrib", algo="recurrent_ppo", env=env_id, steps=steps, seed=seed, wall_s=round(wall, 2),
                      sps=round(steps / wall, 1), eval_mean=round(float(mean), 2), eval_std=round(float(std), 2))))
