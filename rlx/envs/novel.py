"""RL-Zoo's "NoVel" tasks: classic control with the velocity entries of the observation masked to 0, so a
policy sees positions (angles) only and must infer velocities from the past (partial observability).

The masks are RL-Zoo's (``rl_zoo3/wrappers.py``, ``MaskVelocityWrapper.velocity_indices``): the observation
keeps its shape and space and is multiplied by a 0/1 mask (0 at the velocity entries), as there. Importing
this module (``rlx.envs`` does) registers the ids RL-Zoo registers (``rl_zoo3/import_envs.py``):
``CartPoleNoVel-v1``, ``PendulumNoVel-v1``, ``MountainCarNoVel-v0``, ``MountainCarContinuousNoVel-v0``.

Here each id is the base env wrapped in :class:`MaskVelocity` inside ``gym.make``'s own time limit (RL-Zoo
nests a whole ``gym.make(base)``): the same steps, and ``env.max_episode_steps`` and the base env's kwargs
(CartPole's ``sutton_barto_reward``, Pendulum's ``g``) work as on the base id. rlx's batched classic control
(:mod:`rlx.envs.batched`) has a NoVel twin of each (the same mask on its observations).

No module of rlx is imported here: :mod:`rlx.envs.batched` imports this one while ``rlx.envs`` is loading.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv, Continuous_MountainCarEnv, MountainCarEnv, PendulumEnv

# base env id -> the observation entries that are velocities (RL-Zoo's MaskVelocityWrapper.velocity_indices)
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (1, 3),  # [x, x_dot, theta, theta_dot]
    "MountainCar-v0": (1,),  # [position, velocity]
    "MountainCarContinuous-v0": (1,),  # [position, velocity]
    "Pendulum-v1": (2,),  # [cos theta, sin theta, theta_dot]
}


def velocity_mask(space: gym.spaces.Box, velocity_indices: Sequence[int]) -> np.ndarray:
    """1 everywhere in the observation except 0 at ``velocity_indices``, in the observation's dtype."""
    mask = np.ones(space.shape, dtype=space.dtype)
    mask[list(velocity_indices)] = 0
    return mask


class MaskVelocity(gym.ObservationWrapper):
    """obs -> obs * mask, the velocity entries set to 0 (RL-Zoo's ``MaskVelocityWrapper``); the observation
    space is unchanged. ``velocity_indices``: which entries; by default those of the wrapped env's id in
    :data:`VELOCITY_INDICES` (``env.wrappers: [{_target_: rlx.envs.MaskVelocity}]`` on ``CartPole-v1``)."""

    def __init__(self, env: gym.Env, velocity_indices: Sequence[int] | None = None):
        super().__init__(env)
        if velocity_indices is None:
            env_id = env.spec.id if env.spec is not None else None
            if env_id not in VELOCITY_INDICES:
                raise ValueError(f"no velocity entries known for {env_id} (known: {', '.join(VELOCITY_INDICES)}); "
                                 f"pass velocity_indices")
            velocity_indices = VELOCITY_INDICES[env_id]
        self.velocity_indices = tuple(int(i) for i in velocity_indices)
        self.mask = velocity_mask(env.observation_space, self.velocity_indices)  # type: ignore[arg-type]  # a Box

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.mask


def _masked(env_class: type[gym.Env], base_id: str) -> Callable[..., gym.Env]:
    def make(**kwargs: Any) -> gym.Env:
        return MaskVelocity(env_class(**kwargs), VELOCITY_INDICES[base_id])

    make.__doc__ = f"{base_id}'s env with its velocity entries {VELOCITY_INDICES[base_id]} masked to 0."
    return make


# entry points by import path (rlx.envs.batched matches on them); the env classes are the base ids' entry points
cartpole_novel = _masked(CartPoleEnv, "CartPole-v1")
pendulum_novel = _masked(PendulumEnv, "Pendulum-v1")
mountaincar_novel = _masked(MountainCarEnv, "MountainCar-v0")
mountaincar_continuous_novel = _masked(Continuous_MountainCarEnv, "MountainCarContinuous-v0")

# NoVel id -> (base id, entry point)
NOVEL_IDS: dict[str, tuple[str, str]] = {
    "CartPoleNoVel-v1": ("CartPole-v1", f"{__name__}:cartpole_novel"),
    "PendulumNoVel-v1": ("Pendulum-v1", f"{__name__}:pendulum_novel"),
    "MountainCarNoVel-v0": ("MountainCar-v0", f"{__name__}:mountaincar_novel"),
    "MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", f"{__name__}:mountaincar_continuous_novel"),
}


def register_novel_envs() -> None:
    """Register every NoVel id (once) with its base id's time limit and reward threshold."""
    for novel_id, (base_id, entry_point) in NOVEL_IDS.items():
        if novel_id not in gym.registry:
            base = gym.spec(base_id)
            gym.register(novel_id, entry_point=entry_point, max_episode_steps=base.max_episode_steps,
                         reward_threshold=base.reward_threshold)


register_novel_envs()
