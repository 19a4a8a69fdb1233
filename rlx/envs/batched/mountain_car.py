"""MountainCar and MountainCarContinuous (gymnasium's ``MountainCarEnv``, ``Continuous_MountainCarEnv``) over a
batch of sub-envs."""
from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control import utils as cc_utils

from rlx.envs.batched.base import F32, F64, BatchedClassicControl, pow2


class BatchedMountainCar(BatchedClassicControl):
    state_dim, discrete = 2, True

    def _read_constants(self, env) -> None:
        for k in ("min_position", "max_position", "max_speed", "goal_position", "goal_velocity", "force", "gravity"):
            setattr(self, k, getattr(env, k))

    def _reset_one(self, i, rng, options) -> None:
        low, high = cc_utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        self.state[i] = (rng.uniform(low=low, high=high), 0.0)

    def _dynamics(self, actions):
        position, velocity = self.state[:, 0], self.state[:, 1]
        velocity = velocity + ((actions - 1) * self.force + np.cos(3 * position) * (-self.gravity))
        velocity = np.clip(velocity, -self.max_speed, self.max_speed)
        position = np.clip(position + velocity, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        self.state = np.stack((position, velocity), axis=1)
        return np.full(self.num_envs, -1.0), terminated

    def _obs(self):
        return self.state.astype(F32)


class BatchedMountainCarContinuous(BatchedClassicControl):
    """The single env mixes dtypes: its state is float64 right after reset and float32 after every step,
    and it compares float32 values with Python-float thresholds (in float32, NumPy 2). ``fresh`` marks
    sub-envs whose state is still the float64 reset draw; both arithmetics are reproduced."""

    state_dim, discrete = 2, False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh = np.ones(self.num_envs, dtype=bool)

    def _read_constants(self, env) -> None:
        for k in ("min_action", "max_action", "min_position", "max_position", "max_speed", "goal_position",
                  "goal_velocity", "power"):
            setattr(self, k, getattr(env, k))

    def _reset_one(self, i, rng, options) -> None:
        low, high = cc_utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        self.state[i] = (rng.uniform(low=low, high=high), 0.0)
        self.fresh[i] = True

    def _threshold(self, value: float, f32: np.ndarray) -> np.ndarray:
        """The Python-float constant as a float32 sub-env compares against it (rounded to float32)."""
        return np.where(f32, F64(F32(value)), value)

    def _dynamics(self, actions):
        pos, vel = self.state[:, 0], self.state[:, 1]
        f32 = ~self.fresh
        a = actions[:, 0]
        clipped = (a < self.min_action) | (a > self.max_action)
        # force * power: in the action's dtype where the action is in range; a Python float where
        # min(max(a, -1), 1) returned the bound; cos of 3*position in the state's dtype, then in double
        three_pos = np.where(f32, F64(F32(3) * pos.astype(F32)), 3 * pos)
        cos_term = 0.0025 * np.cos(three_pos)
        inc_in_range = (a * self.power - cos_term.astype(a.dtype)).astype(F64)
        inc_clipped = np.clip(a.astype(F64), self.min_action, self.max_action) * self.power - cos_term
        inc = np.where(clipped, inc_clipped, inc_in_range)
        vel = np.where(f32, F64(vel.astype(F32) + inc.astype(F32)), vel + inc)
        # a clamped value is the Python-float bound itself (compared in double afterwards)
        vel_hi, vel_lo = vel > self._threshold(self.max_speed, f32), vel < self._threshold(-self.max_speed, f32)
        vel = np.where(vel_hi, self.max_speed, np.where(vel_lo, -self.max_speed, vel))
        vel_f32 = f32 & ~(vel_hi | vel_lo)
        pos = np.where(f32, F64(pos.astype(F32) + vel.astype(F32)), pos + vel)
        pos_hi, pos_lo = pos > self._threshold(self.max_position, f32), pos < self._threshold(self.min_position, f32)
        pos = np.where(pos_hi, self.max_position, np.where(pos_lo, self.min_position, pos))
        pos_f32 = f32 & ~(pos_hi | pos_lo)
        stopped = (pos == self._threshold(self.min_position, pos_f32)) & (vel < 0)
        vel, vel_f32 = np.where(stopped, 0.0, vel), vel_f32 & ~stopped
        terminated = ((pos >= self._threshold(self.goal_position, pos_f32))
                      & (vel >= self._threshold(self.goal_velocity, vel_f32)))
        reward = np.where(terminated, 100.0, 0.0) - pow2(a.astype(F64)) * 0.1
        self.state = np.stack((pos, vel), axis=1).astype(F32).astype(F64)
        self.fresh[:] = False
        return reward, terminated

    def _obs(self):
        return self.state.astype(F32)

    def _extra_state(self):
        return {"fresh": self.fresh.copy()}

    def _load_extra_state(self, snapshot):
        self.fresh = snapshot["fresh"].copy()

    def _extra_state_of(self, raw_states):
        return {"fresh": np.array([s.dtype == F64 for s in raw_states])}
