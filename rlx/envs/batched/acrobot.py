"""Acrobot (gymnasium's ``AcrobotEnv``: its rk4 step and angle wrap, operation for operation) over a batch of sub-envs."""
from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control import utils as cc_utils

from rlx.envs.batched.base import F32, F64, BatchedClassicControl, pow2


class BatchedAcrobot(BatchedClassicControl):
    state_dim, discrete = 4, True
    # gymnasium's AcrobotEnv constants, copied by _read_constants
    dt: float
    LINK_MASS_1: float
    LINK_MASS_2: float
    LINK_LENGTH_1: float
    LINK_COM_POS_1: float
    LINK_COM_POS_2: float
    LINK_MOI: float
    MAX_VEL_1: float
    MAX_VEL_2: float
    book_or_nips: str

    def _read_constants(self, env) -> None:
        if env.torque_noise_max > 0:  # a class attribute in gymnasium; noise would need its RNG stream
            raise ValueError("Acrobot with torque noise is not batched")
        for k in ("dt", "LINK_MASS_1", "LINK_MASS_2", "LINK_LENGTH_1", "LINK_COM_POS_1", "LINK_COM_POS_2",
                  "LINK_MOI", "MAX_VEL_1", "MAX_VEL_2", "book_or_nips"):
            setattr(self, k, getattr(env, k))
        self.torques = np.asarray(env.AVAIL_TORQUE, dtype=F64)

    def _reset_one(self, i, rng, options) -> None:
        low, high = cc_utils.maybe_parse_reset_bounds(options, -0.1, 0.1)
        self.state[i] = rng.uniform(low=low, high=high, size=(4,)).astype(F32)

    def _dsdt(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """gymnasium's AcrobotEnv._dsdt over a batch: s [n, 4] -> d/dt [n, 4] (the torque is constant)."""
        m1, m2, l1 = self.LINK_MASS_1, self.LINK_MASS_2, self.LINK_LENGTH_1
        lc1, lc2, I1, I2 = self.LINK_COM_POS_1, self.LINK_COM_POS_2, self.LINK_MOI, self.LINK_MOI
        g, pi = 9.8, np.pi
        theta1, theta2, dtheta1, dtheta2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * np.cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * np.cos(theta2)) + I2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * pow2(dtheta2) * np.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - pi / 2) + phi2)
        if self.book_or_nips == "nips":
            ddtheta2 = (a + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + I2 - pow2(d2) / d1)
        else:
            ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * pow2(dtheta1) * np.sin(theta2) - phi2) / (
                m2 * lc2**2 + I2 - pow2(d2) / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), axis=1)

    def _dynamics(self, actions):
        a = self.torques[actions]
        y0, dt = self.state, self.dt
        dt2 = dt / 2.0  # gymnasium's rk4 over t = [0, dt], one step, same operation order
        k1 = self._dsdt(y0, a)
        k2 = self._dsdt(y0 + dt2 * k1, a)
        k3 = self._dsdt(y0 + dt2 * k2, a)
        k4 = self._dsdt(y0 + dt * k3, a)
        ns = y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        for j in (0, 1):  # gymnasium's wrap(): repeated +-2pi, not a modulo (different rounding)
            col = ns[:, j]
            while (over := col > np.pi).any():
                col[over] -= 2 * np.pi
            while (under := col < -np.pi).any():
                col[under] += 2 * np.pi
        ns[:, 2] = np.clip(ns[:, 2], -self.MAX_VEL_1, self.MAX_VEL_1)
        ns[:, 3] = np.clip(ns[:, 3], -self.MAX_VEL_2, self.MAX_VEL_2)
        self.state = ns
        terminated = -np.cos(ns[:, 0]) - np.cos(ns[:, 1] + ns[:, 0]) > 1.0
        return np.where(terminated, 0.0, -1.0), terminated

    def _obs(self):
        s = self.state
        return np.stack((np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]), s[:, 2], s[:, 3]),
                        axis=1).astype(F32)
