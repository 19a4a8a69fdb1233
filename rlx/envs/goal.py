"""``PointGoal-v0``: a goal-conditioned point mass with a Dict observation (issue 26), small enough for a test.

A point moves in the square [-1, 1]^2 toward a goal drawn uniformly there at each reset: the action (a Box in
[-1, 1]^2) moves it by 0.1 * action per step (clipped to the square), the reward is minus the distance to
the goal, and an episode is 50 steps (a time limit, no termination). The observation is a ``Dict``:
``{"goal": Box(-1, 1, (2,)), "position": Box(-1, 1, (2,))}``; with ``image_size=S`` (an env kwarg) also
``"image"``: a uint8 ``(1, S, S)`` top view with the goal's cell at 255 and the point's at 128, so the same
task exercises a CNN per image key. A policy that ignores the goal can do no better than to sit in the
middle (about -38 per episode); one that reaches each goal gets about -6 (random actions: about -55).

Importing this module (``rlx.envs`` does) registers the id; ``env=point_goal`` selects it.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

STEP = 0.1  # distance moved per step at |action| = 1, per axis
EPISODE_STEPS = 50


class PointGoalEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, image_size: int = 0, render_mode: str | None = None):
        if image_size and image_size < 2:
            raise ValueError(f"image_size={image_size}: 0 (no image key) or at least 2")
        self.image_size, self.render_mode = int(image_size), render_mode
        spaces: dict[str, gym.Space] = {"position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                                        "goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)}
        if self.image_size:
            spaces["image"] = gym.spaces.Box(0, 255, (1, self.image_size, self.image_size), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)

    def _cell(self, p: np.ndarray, size: int) -> tuple[int, int]:
        i = np.minimum(((p + 1.0) / 2.0 * size).astype(np.int64), size - 1)
        return int(i[1]), int(i[0])  # (row: y, column: x)

    def _obs(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {"position": self.position.copy(), "goal": self.goal.copy()}
        if self.image_size:
            image = np.zeros((1, self.image_size, self.image_size), np.uint8)
            image[(0, *self._cell(self.goal, self.image_size))] = 255
            image[(0, *self._cell(self.position, self.image_size))] = 128
            obs["image"] = image
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self.position = np.clip(self.position + STEP * a, -1.0, 1.0).astype(np.float32)
        distance = float(np.linalg.norm(self.position - self.goal))
        return self._obs(), -distance, False, False, {"distance": distance}

    def render(self):
        size = 64
        frame = np.full((size, size, 3), 255, np.uint8)
        for p, color in ((self.goal, (0, 160, 0)), (self.position, (200, 0, 0))):
            r, c = self._cell(p, size)
            frame[max(r - 2, 0): r + 3, max(c - 2, 0): c + 3] = color
        return frame


def register_goal_envs() -> None:
    if "PointGoal-v0" not in gym.registry:
        gym.register("PointGoal-v0", entry_point=f"{__name__}:PointGoalEnv", max_episode_steps=EPISODE_STEPS)


register_goal_envs()
