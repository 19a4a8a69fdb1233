"""Policy evaluation on separate envs: the figure every comparison uses (deterministic by default)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from rlx.envs import _EnvFactory, make_vec_env, resolve_env_id
from rlx.rundir import ensure_writable_dir

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
        self.envs: gym.vector.VectorEnv
        if video_dir is not None:
            env_id = resolve_env_id(env_id)
            video_dir = ensure_writable_dir(Path(video_dir), "video dir")
            factory = _VideoFactory(env_id, dict(kwargs or {}), max_episode_steps, str(video_dir), episodes, wrappers)
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
        # torch.manual_seed reseeds every CUDA device too: fork those (once CUDA is in use) as well, or each
        # evaluation would reset the training's CUDA streams (replay sampling, minibatch shuffles, noise).
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
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
    def __init__(self, env_id: str, kwargs: dict, max_episode_steps: int | None, video_dir: str, episodes: int,
                 wrappers: list | tuple = ()):
        # the video records env.render(): the raw game frames (e.g. Atari's 210x160 RGB), not the network input
        super().__init__(env_id, kwargs, max_episode_steps, render_mode="rgb_array", wrappers=wrappers)
        self.video_dir, self.episodes = video_dir, episodes

    def __call__(self) -> gym.Env:
        # Only the episodes asked for: the vector env's autoreset starts one more episode after the last,
        # which would otherwise be recorded too (a stray, truncated extra file).
        episodes = self.episodes
        return gym.wrappers.RecordVideo(super().__call__(), self.video_dir, episode_trigger=lambda i: i < episodes,
                                       disable_logger=True)
