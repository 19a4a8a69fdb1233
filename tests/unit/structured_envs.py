"""Tiny tasks with structured action spaces for the tests (``env.id=tests.unit.structured_envs:<Class>``).

* ``ChooseValues``: MultiDiscrete(nvec): every step shows a random target value per sub-action (one-hot per
  sub-action in the observation); the reward is the share of sub-actions that chose their target (1 at
  best, sum_j 1/nvec_j / D for uniform random actions). Fixed-length episodes (time-limit truncation).
* ``MatchBits``: MultiBinary(n): every step shows n random bits; the reward is the share of action bits that
  are the observed bits' complement.
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np


class ChooseValues(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self, nvec: Sequence[int] = (3, 4, 5), episode_steps: int = 8):
        self.nvec = np.asarray(nvec, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]])
        self.episode_steps = episode_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(self.nvec.sum()),), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(self.nvec)

    def _draw(self) -> np.ndarray:
        self.target = self.np_random.integers(0, self.nvec)
        obs = np.zeros(self.observation_space.shape, np.float32)
        obs[self.offsets + self.target] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        reward = float(np.mean(np.asarray(action) == self.target))
        self.t += 1
        return self._draw(), reward, False, self.t >= self.episode_steps, {}


class MatchBits(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self, n: int = 4, episode_steps: int = 8):
        self.n, self.episode_steps = n, episode_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gym.spaces.MultiBinary(n)

    def _draw(self) -> np.ndarray:
        self.bits = self.np_random.integers(0, 2, self.n)
        return self.bits.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        reward = float(np.mean(np.asarray(action) == 1 - self.bits))
        self.t += 1
        return self._draw(), reward, False, self.t >= self.episode_steps, {}
