"""The notes' toy problems as gymnasium envs (importing this module registers their ids).

* ``PenaltyShootout``: one kick per episode. The goalie always jumps right; shooting left (action 0)
  scores 1, shooting right (action 1) scores 0 (notes: "Understanding the Advantage Function").
* ``TwoPassages``: a robot in one start state chooses a heading a in [-1, 1]; a < 0 takes the left
  passage, a >= 0 the right one. The return is a bump around each passage's centre, the left one
  higher: Q(s, a) = r(a) is bimodal (notes: "Overcoming Exploration Bias in Multimodal Q-Functions").
* ``TwoPassagesDiscrete``: the same with ``n_actions`` headings evenly spaced over [-1, 1].
"""
from __future__ import annotations

from typing import cast

import gymnasium as gym
import numpy as np

LEFT, RIGHT = 0, 1
# (centre, value, width) of each passage's bump; the left passage is worth more
PASSAGES = ((-0.5, 1.0, 0.15), (0.5, 0.8, 0.15))


class PenaltyShootout(gym.Env):
    """Observation: a constant [1.0] (one state); actions 0 = shoot left, 1 = shoot right; one step."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        # the goalie jumps right: only a shot to the left goes in
        reward = 1.0 if int(action) == LEFT else 0.0
        return np.ones(1, np.float32), reward, True, False, {"scored": reward == 1.0}


def two_passages_reward(a: np.ndarray | float) -> np.ndarray:
    """r(a) = sum over passages of value * exp(-(a - centre)^2 / (2 width^2)): two peaks, 1.0 at -0.5 and 0.8 at +0.5."""
    a = np.asarray(a, dtype=np.float64)
    return cast(np.ndarray, sum(v * np.exp(-((a - c) ** 2) / (2 * w**2)) for c, v, w in PASSAGES))  # sum's start 0: an array


def passage(a: np.ndarray | float) -> np.ndarray:
    """0 (left) where a < 0, 1 (right) otherwise."""
    return (np.asarray(a) >= 0).astype(np.int64)


class TwoPassages(gym.Env):
    """Observation: a constant [1.0] (the start state); action: heading a in [-1, 1]; one step."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def heading(self, action) -> float:
        return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))

    def step(self, action):
        a = self.heading(action)
        return np.ones(1, np.float32), float(two_passages_reward(a)), True, False, {"passage": int(passage(a))}


class TwoPassagesDiscrete(TwoPassages):
    """The discretized twin: action k is heading ``headings[k]`` (evenly spaced over [-1, 1])."""

    def __init__(self, n_actions: int = 21):
        super().__init__()
        if n_actions < 2:
            raise ValueError(f"n_actions={n_actions}: need at least 2")
        self.headings = np.linspace(-1.0, 1.0, n_actions)
        self.action_space = gym.spaces.Discrete(n_actions)

    def heading(self, action) -> float:
        return float(self.headings[int(action)])


for _name, _cls in (("PenaltyShootout", PenaltyShootout), ("TwoPassages", TwoPassages),
                    ("TwoPassagesDiscrete", TwoPassagesDiscrete)):
    if f"rlx/{_name}-v0" not in gym.registry:
        gym.register(f"rlx/{_name}-v0", entry_point=_cls)  # type: ignore[arg-type]  # gymnasium's EnvCreator type omits classes
