"""Classic-control tasks with all sub-envs stepped as one NumPy batch (a drop-in for rlx's sync vector env):
which gymnasium envs have a batched port and when ``env.batched`` uses it.

One module per task: ``cartpole``, ``pendulum``, ``acrobot``, ``mountain_car`` (MountainCar and
MountainCarContinuous), each a subclass of :class:`~rlx.envs.batched.base.BatchedClassicControl` (``base``:
seeding, time limit, same-step autoreset, checkpoint state; its docstring says why and how the semantics
equal ``SyncVectorEnv`` over ``gym.make``), and ``novel``: their velocity-masked NoVel twins
(:mod:`rlx.envs.novel`). The public names of all of them are importable from here."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlx.envs.batched.acrobot import BatchedAcrobot
from rlx.envs.batched.base import F32, F64, BatchedClassicControl, VecEnv, pow2
from rlx.envs.batched.cartpole import BatchedCartPole
from rlx.envs.batched.mountain_car import BatchedMountainCar, BatchedMountainCarContinuous
from rlx.envs.batched.novel import (
    BatchedCartPoleNoVel,
    BatchedMountainCarContinuousNoVel,
    BatchedMountainCarNoVel,
    BatchedPendulumNoVel,
)
from rlx.envs.batched.pendulum import BatchedPendulum
from rlx.errors import UserError

__all__ = ["AUTO_MIN_ENVS", "BATCHED", "F32", "F64", "BatchedAcrobot", "BatchedCartPole", "BatchedCartPoleNoVel",
           "BatchedClassicControl", "BatchedMountainCar", "BatchedMountainCarContinuous", "BatchedMountainCarContinuousNoVel",
           "BatchedMountainCarNoVel", "BatchedPendulum", "BatchedPendulumNoVel", "VecEnv", "batched_class",
           "make_batched_vec_env", "pow2", "select_batched"]

# gymnasium entry point -> (batched class, the constructor kwargs whose effect it models)
BATCHED: dict[str, tuple[type[BatchedClassicControl], frozenset[str]]] = {
    "gymnasium.envs.classic_control.cartpole:CartPoleEnv": (BatchedCartPole, frozenset({"sutton_barto_reward"})),
    "gymnasium.envs.classic_control.pendulum:PendulumEnv": (BatchedPendulum, frozenset({"g"})),
    "gymnasium.envs.classic_control.acrobot:AcrobotEnv": (BatchedAcrobot, frozenset()),
    "gymnasium.envs.classic_control.mountain_car:MountainCarEnv": (BatchedMountainCar, frozenset({"goal_velocity"})),
    "gymnasium.envs.classic_control.continuous_mountain_car:Continuous_MountainCarEnv": (
        BatchedMountainCarContinuous, frozenset({"goal_velocity"})),
    # rlx.envs.novel's NoVel ids (entry points there), the same kwargs as their base envs
    "rlx.envs.novel:cartpole_novel": (BatchedCartPoleNoVel, frozenset({"sutton_barto_reward"})),
    "rlx.envs.novel:pendulum_novel": (BatchedPendulumNoVel, frozenset({"g"})),
    "rlx.envs.novel:mountaincar_novel": (BatchedMountainCarNoVel, frozenset({"goal_velocity"})),
    "rlx.envs.novel:mountaincar_continuous_novel": (BatchedMountainCarContinuousNoVel, frozenset({"goal_velocity"})),
}


def batched_class(env_id: str, kwargs: dict[str, Any] | None = None) -> type[BatchedClassicControl] | None:
    """The batched implementation of a registered env id with these kwargs, or None if there is none.

    Matched on the registry's entry point (so ``CartPole-v0`` and re-registrations are covered) and on the
    spec's wrappers: anything beyond gymnasium's defaults, or a kwarg not modelled here, means None.
    """
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None
    entry = BATCHED.get(spec.entry_point) if isinstance(spec.entry_point, str) else None
    if entry is None or spec.additional_wrappers:
        return None
    cls, supported = entry
    if not set({**spec.kwargs, **(kwargs or {})}) <= supported:
        return None
    return cls


def make_batched_vec_env(env_id: str, num_envs: int, kwargs: dict[str, Any] | None = None,
                         max_episode_steps: int | None = None) -> BatchedClassicControl:
    cls = batched_class(env_id, kwargs)
    if cls is None:
        raise ValueError(f"no batched implementation of {env_id} with kwargs {kwargs or {}}")
    return cls(env_id, num_envs, kwargs, max_episode_steps)


# ``env.batched=auto`` batches from this many sub-envs on. Measured (2-core CPU, CartPole-v1 and
# Pendulum-v1, random actions, benchmarks/results.md): at 1-2 sub-envs the ~40 NumPy calls of a
# batched step cost more than the sync vector env's per-env Python; from 3-4 on batching wins (x1.3-2
# at 4, x2-4 at 8, x4-8 at 16).
AUTO_MIN_ENVS = 4


def select_batched(env_id: str, num_envs: int, kwargs: dict[str, Any] | None, render_mode: str | None,
                   batched: bool | str) -> type[BatchedClassicControl] | None:
    """The batched class ``make_vec_env`` should use for ``env.batched`` (True | False | "auto"), or None
    for gymnasium's sync vector env. True without a batched implementation is a UserError."""
    if batched is False or batched == "false":
        return None
    cls = batched_class(env_id, kwargs) if render_mode is None else None
    if batched is True or batched == "true":
        if cls is None:
            raise UserError(f"env.batched=true: {env_id} has no batched implementation"
                            f"{' with kwargs ' + str(dict(kwargs)) if kwargs else ''}"
                            f" (batched: {', '.join(sorted(gym.spec(e).id for e in _BATCHED_IDS))}); use env.batched=auto")
        return cls
    if batched != "auto":
        raise UserError(f"env.batched={batched!r}: expected true, false or auto")
    return cls if num_envs >= AUTO_MIN_ENVS else None


_BATCHED_IDS = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0",
                "CartPoleNoVel-v1", "PendulumNoVel-v1", "MountainCarNoVel-v0", "MountainCarContinuousNoVel-v0")
