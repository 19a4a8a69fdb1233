# ruff: noqa  (from ../shared/peer/ as the issue measured it; TD3/DDPG added with sb3_baseline.py's Pendulum values)
"""Peer: SBX (Stable-Baselines3 in JAX) on the same tasks/hyperparameters as peer_sb3.py.
Usage: python sbx_baseline.py ALGO ENV STEPS SEED -> JSON (wall includes JIT compile)."""
import json, sys, time
import gymnasium as gym
import numpy as np
from sbx import DDPG, PPO, SAC, TD3
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
algo, env_id, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lin = lambda v: (lambda p: p * v)
if algo == "ppo":
    env = make_vec_env(env_id, n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=lin(0.001), clip_range=0.2, seed=seed)
elif algo in ("td3", "ddpg"):  # RL-Zoo's Pendulum values, as sb3_baseline.py
    env = gym.make(env_id)
    n = env.action_space.shape[0]
    model = (TD3 if algo == "td3" else DDPG)("MlpPolicy", env, action_noise=NormalActionNoise(np.zeros(n), 0.1 * np.ones(n)),
        learning_rate=1e-3, gamma=0.98, buffer_size=200000, learning_starts=10000, gradient_steps=1, train_freq=1,
        policy_kwargs=dict(net_arch=[400, 300]), seed=seed)
else:
    model = SAC("MlpPolicy", gym.make(env_id), learning_rate=1e-3, seed=seed)
t = time.time(); model.learn(total_timesteps=steps); wall = time.time() - t
mean, std = evaluate_policy(model, gym.make(env_id), n_eval_episodes=10, deterministic=True)
print(json.dumps(dict(lib="sbx", algo=algo, env=env_id, steps=steps, wall_s=round(wall, 2), sps=round(steps / wall, 1),
                      eval_mean=round(float(mean), 2))))
