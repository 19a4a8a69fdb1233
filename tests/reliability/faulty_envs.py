"""Test-only environments (importable as env.id=tests.reliability.faulty_envs:NAME)."""
import gymnasium as gym
import numpy as np


class NaNObservationEnv(gym.Env):
    """A 1-d random walk that emits a NaN observation at its ``nan_at``-th step overall."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, nan_at: int = 300):
        self.nan_at, self.t, self.x = nan_at, 0, 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        self.x += 0.1 if action else -0.1
        obs = np.array([self.x, np.nan if self.t >= self.nan_at else 0.0], np.float32)
        return obs, 1.0, abs(self.x) > 1.0, False, {}


class BadSpaceEnv(NaNObservationEnv):
    """Returns observations outside its declared space: the env checker should complain."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([1, 2, 3], np.float64), {}
