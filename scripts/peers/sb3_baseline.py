# ruff: noqa  (copied verbatim from ../shared/peer/: the peer scripts as the issue measured them)
"""Peer baseline: Stable-Baselines3 on the same tasks rlx is measured on.
Usage: python sb3_baseline.py ALGO ENV STEPS SEED  -> prints JSON with wall, sps, eval return."""
import json, sys, time
import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC, DDPG, TD3, A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise, NormalActionNoise

torch.set_num_threads(1)
algo, env_id, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lin = lambda v: (lambda p: p * v)
if algo == "ppo" and env_id == "CartPole-v1":  # rl-zoo hyperparams
    env = make_vec_env(env_id, n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=lin(0.001), clip_range=lin(0.2), seed=seed, device="cpu")
elif algo == "ppo" and env_id == "Pendulum-v1":
    env = make_vec_env(env_id, n_envs=4, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4, seed=seed, device="cpu")
elif algo == "a2c" and env_id == "CartPole-v1":
    env = make_vec_env(env_id, n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
elif algo == "sac":
    env = gym.make(env_id)
    kw = dict(learning_rate=1e-3) if env_id == "Pendulum-v1" else dict(learning_starts=10000)
    model = SAC("MlpPolicy", env, seed=seed, device="cpu", **kw)
elif algo in ("td3", "ddpg"):
    env = gym.make(env_id)
    n = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(n), 0.1 * np.ones(n))
    cls = TD3 if algo == "td3" else DDPG
    kw = dict(learning_rate=1e-3, gamma=0.98, buffer_size=200000, learning_starts=10000,
              gradient_steps=1, train_freq=1, policy_kwargs=dict(net_arch=[400, 300])) if env_id == "Pendulum-v1" else dict(learning_starts=10000)
    model = cls("MlpPolicy", env, action_noise=noise, seed=seed, device="cpu", **kw)
else:
    raise SystemExit(f"no config for {algo} {env_id}")
t = time.time()
model.learn(total_timesteps=steps)
wall = time.time() - t
eval_env = gym.make(env_id)
mean, std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
print(json.dumps(dict(lib="sb3", algo=algo, env=env_id, steps=steps, seed=seed, wall_s=round(wall, 2),
                      sps=round(steps / wall, 1), eval_mean=round(float(mean), 2), eval_std=round(float(std), 2))))
