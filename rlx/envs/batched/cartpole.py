"""CartPole (gymnasium's ``CartPoleEnv``, incl. ``sutton_barto_reward``) over a batch of sub-envs."""
from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control import utils as cc_utils

from rlx.envs.batched.base import F32, BatchedClassicControl


class BatchedCartPole(BatchedClassicControl):
    state_dim, discrete = 4, True

    def _read_constants(self, env) -> None:
        for k in ("gravity", "masspole", "total_mass", "length", "polemass_length", "force_mag", "tau",
                  "kinematics_integrator", "theta_threshold_radians", "x_threshold", "_sutton_barto_reward"):
            setattr(self, k, getattr(env, k))

    def _reset_one(self, i, rng, options) -> None:
        low, high = cc_utils.maybe_parse_reset_bounds(options, -0.05, 0.05)
        self.state[i] = rng.uniform(low=low, high=high, size=(4,))

    def _dynamics(self, actions):
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        if self.kinematics_integrator == "euler":
            x, x_dot = x + self.tau * x_dot, x_dot + self.tau * xacc
            theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc
        else:  # semi-implicit euler
            x_dot = x_dot + self.tau * xacc
            x = x + self.tau * x_dot
            theta_dot = theta_dot + self.tau * thetaacc
            theta = theta + self.tau * theta_dot
        self.state = np.stack((x, x_dot, theta, theta_dot), axis=1)
        terminated = ((x < -self.x_threshold) | (x > self.x_threshold)
                      | (theta < -self.theta_threshold_radians) | (theta > self.theta_threshold_radians))
        # with autoreset a terminal step is always the first one past the threshold (1.0, or -1.0 Sutton-Barto)
        if self._sutton_barto_reward:
            reward = np.where(terminated, -1.0, 0.0)
        else:
            reward = np.ones(self.num_envs)
        return reward, terminated

    def _obs(self):
        return self.state.astype(F32)
