"""Pendulum (gymnasium's ``PendulumEnv``, incl. its ``g``) over a batch of sub-envs, float32 action terms as there."""
from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control import utils as cc_utils
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y

from rlx.envs.batched.base import F32, F64, BatchedClassicControl, pow2


class BatchedPendulum(BatchedClassicControl):
    state_dim, discrete = 2, False

    def _read_constants(self, env) -> None:
        self.g, self.m, self.length, self.dt = env.g, env.m, env.l, env.dt
        self.max_speed, self.max_torque = env.max_speed, env.max_torque

    def _reset_one(self, i, rng, options) -> None:
        if options is None:
            high = np.array([DEFAULT_X, DEFAULT_Y])
        else:
            high = np.array([cc_utils.verify_number_and_cast(options.get("x_init", DEFAULT_X)),
                             cc_utils.verify_number_and_cast(options.get("y_init", DEFAULT_Y))])
        self.state[i] = rng.uniform(low=-high, high=high)

    def _dynamics(self, actions):
        th, thdot = self.state[:, 0], self.state[:, 1]
        g, m, length, dt = self.g, self.m, self.length, self.dt
        # u keeps the action's dtype (float32 from the Box) as in the single env, where the u terms are
        # computed in float32 before meeting the float64 state
        u = np.clip(actions, -self.max_torque, self.max_torque)[:, 0]
        costs = pow2(((th + np.pi) % (2 * np.pi)) - np.pi) + 0.1 * pow2(thdot) + 0.001 * pow2(u)
        newthdot = thdot + (3 * g / (2 * length) * np.sin(th) + 3.0 / (m * length**2) * u) * dt
        newthdot = np.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * dt
        self.state = np.stack((newth, newthdot), axis=1)
        return -costs.astype(F64), np.zeros(self.num_envs, dtype=bool)

    def _obs(self):
        th, thdot = self.state[:, 0], self.state[:, 1]
        return np.stack((np.cos(th), np.sin(th), thdot), axis=1).astype(F32)
