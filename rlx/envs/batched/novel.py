"""The NoVel tasks (:mod:`rlx.envs.novel`, RL-Zoo's velocity-masked classic control) over a batch of sub-envs:
each task's batched dynamics with the same 0/1 mask on every observation (also ``final_obs``)."""
from __future__ import annotations

import numpy as np

from rlx.envs.batched.base import BatchedClassicControl
from rlx.envs.batched.cartpole import BatchedCartPole
from rlx.envs.batched.mountain_car import BatchedMountainCar, BatchedMountainCarContinuous
from rlx.envs.batched.pendulum import BatchedPendulum
from rlx.envs.novel import VELOCITY_INDICES


class _MaskedVelocity(BatchedClassicControl):
    """Mixin: observations times :func:`rlx.envs.novel.velocity_mask` of the base id's velocity entries (the
    single env's ``MaskVelocity`` arithmetic: the same float32 products, -0.0 included)."""

    base_id: str

    def _obs(self) -> np.ndarray:
        obs = super()._obs()
        mask = np.ones(obs.shape[1:], dtype=obs.dtype)
        mask[list(VELOCITY_INDICES[self.base_id])] = 0
        return obs * mask


class BatchedCartPoleNoVel(_MaskedVelocity, BatchedCartPole):
    base_id = "CartPole-v1"


class BatchedPendulumNoVel(_MaskedVelocity, BatchedPendulum):
    base_id = "Pendulum-v1"


class BatchedMountainCarNoVel(_MaskedVelocity, BatchedMountainCar):
    base_id = "MountainCar-v0"


class BatchedMountainCarContinuousNoVel(_MaskedVelocity, BatchedMountainCarContinuous):
    base_id = "MountainCarContinuous-v0"
