"""A tiny task that needs memory, for the recurrent-policy tests (``env.id=tests.unit.memory_envs:RecallCue``).

``RecallCue``: the first observation shows one of ``n_cues`` cues (one-hot); the next ``delay`` observations
are blank; the last one raises a "recall now" flag, and the action taken then earns 1 if it names the cue
(0 otherwise; every other step's action is ignored and earns 0). Episodes are ``delay + 2`` steps, ended by
termination. A memoryless policy sees the same observation at every recall step, so it scores at most
``1 / n_cues`` per episode in expectation; a policy that carries the cue through its state scores 1.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np


class RecallCue(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self, n_cues: int = 4, delay: int = 4):
        self.n_cues, self.delay = n_cues, delay
        # [cue one-hot (n_cues), recall flag]
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n_cues + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(n_cues)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        elif self.t == self.delay + 1:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(self.n_cues))
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        recall = self.t == self.delay + 1
        reward = float(recall and int(action) == self.cue)
        self.t += 1
        return self._obs() if not recall else np.zeros(self.observation_space.shape, np.float32), reward, recall, False, {}
