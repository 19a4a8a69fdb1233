"""Policy evaluation on separate envs: the figure every comparison uses (deterministic by default)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from rlx.envs import _EnvFactory, make_vec_env, resolve_env_id

ActFn = Callable[[torch.Tensor, bool], torch.Tensor]


def to_env_actions(actions: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """Tensor actions -> what the vector env accepts; Gaussian samples are clipped to the Box."""
    a = actions.detach().cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(a, action_space.low, action_space.high)
    return a


class Evaluator:
    """Runs ``episodes`` full episodes spread over up to ``max_envs`` parallel envs.

    Each env gets a fixed quota of episodes, so short episodes are not over-represented. The eval envs
    are reseeded identically every time, so two evaluations of the same policy give the same number.
    """

    def __init__(self, env_id: str, episodes: int, seed: int, device: torch.device, kwargs: dict | None = None,
                 max_episode_steps: int | None = None, max_envs: int = 10, video_dir: str | Path | None = None,
                 wrappers: list | tuple = ()):
        self.episodes, self.seed, self.device = episodes, seed, device
        if video_dir is not None:
            env_id = resolve_env_id(env_id)
            factory = _VideoFactory(env_id, dict(kwargs or {}), max_episode_steps, str(video_dir), wrappers)
            self.envs = gym.vector.SyncVectorEnv([factory], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        else:
            # env.wrappers, not env.train_wrappers: evaluation reports the real return (whole games, unclipped)
            self.envs = make_vec_env(env_id, min(episodes, max_envs), seed, kwargs, max_episode_steps, wrappers=wrappers)

    def __call__(self, act: ActFn, deterministic: bool = True) -> np.ndarray:
        n = self.envs.num_envs
        quota = np.array([self.episodes // n + (i < self.episodes % n) for i in range(n)])
        returns: list[float] = []
        ep_ret = np.zeros(n)
        obs, _ = self.envs.reset(seed=self.seed)
        # Stochastic evaluation must not consume the training RNG stream (resume/determinism).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            while (quota > 0).any():
                actions = act(torch.as_tensor(obs, dtype=torch.float32, device=self.device), deterministic)
                obs, rewards, terminated, truncated, _ = self.envs.step(to_env_actions(actions, self.envs.single_action_space))
                ep_ret += rewards
                for i in np.flatnonzero(terminated | truncated):
                    if quota[i] > 0:
                        returns.append(float(ep_ret[i]))
                        quota[i] -= 1
                    ep_ret[i] = 0.0
        return np.asarray(returns)

    def close(self) -> None:
        self.envs.close()


class _VideoFactory(_EnvFactory):
    def __init__(self, env_id: str, kwargs: dict, max_episode_steps: int | None, video_dir: str, wrappers: list | tuple = ()):
        # the video records env.render(): the raw game frames (e.g. Atari's 210x160 RGB), not the network input
        super().__init__(env_id, kwargs, max_episode_steps, render_mode="rgb_array", wrappers=wrappers)
        self.video_dir = video_dir

    def __call__(self) -> gym.Env:
        return gym.wrappers.RecordVideo(super().__call__(), self.video_dir, episode_trigger=lambda _: True, disable_logger=True)
