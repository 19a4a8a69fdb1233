"""The base of rlx's batched classic-control envs: seeding, time limit, same-step autoreset, ``final_obs``
and checkpoint state for all sub-envs at once; each task's dynamics are in its own module beside this one.

Why: gymnasium's ``SyncVectorEnv`` steps its sub-envs one by one, each through four wrappers
(PassiveEnvChecker, OrderEnforcing, TimeLimit) and a Python-level ``step``; for CartPole or Pendulum that
per-env overhead is most of an env step's cost. Here the dynamics of all ``num_envs`` sub-envs are a
few whole-array NumPy ops, which is also what a population of K members x num_envs envs needs (issue 12).

Semantics are exactly those of ``make_vec_env``'s ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)`` over
``gym.make(env_id)``, so a run gives the same numbers with either:

- same-step autoreset: the observation returned with ``terminated | truncated`` is already the next
  episode's first one; the episode's last observation is in ``info["final_obs"]`` (an object array,
  ``None`` where no episode ended, mask ``info["_final_obs"]``), plus ``final_info``/``_final_info``;
- time limit as gymnasium's ``TimeLimit``: ``truncated`` once an episode has run ``max_episode_steps``
  steps, also when it terminates on that same step (both flags are then set);
- seeding as ``SyncVectorEnv``: ``reset(seed=s)`` seeds sub-env i with ``s + i``, each sub-env keeps its own
  ``np.random.Generator`` and draws its reset states from it exactly as the single env does, so the
  initial states (and hence whole trajectories) equal the per-env ones;
- the arithmetic mirrors each single env's, including its dtypes (float32 action terms in Pendulum,
  MountainCarContinuous's float32 state), so trajectories agree to float rounding; the tests check obs,
  reward, terminated and truncated against gymnasium's own envs over random actions.

The physical constants and spaces are read from an instance of gymnasium's own env built with the
same kwargs, so a kwarg such as Pendulum's ``g`` means what it means there. Only kwargs whose effect is
modelled here are accepted (:data:`rlx.envs.batched.BATCHED`); anything else falls back to the sync vector env.

gymnasium's own ``CartPoleVectorEnv`` is not used: it autoresets on the *next* step (a dead step per
episode with reward 0 and ignored action, no ``final_obs``) and draws every sub-env's reset from one
shared generator, so it would change both what rlx's loops see and the trajectories of a seed.
"""
from __future__ import annotations

from typing import Any, TypeAlias, cast

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

F32, F64 = np.float32, np.float64


def pow2(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` as the single envs compute it on NumPy scalars: libm ``pow`` (an array ``x ** 2`` is
    ``x * x``, which differs in the last bit for ~0.1% of inputs; the chaotic Acrobot amplifies that
    past 1e-6 within a few hundred steps). An array exponent keeps NumPy off its ``square`` fast path."""
    return np.power(x, np.full_like(x, 2))


class BatchedClassicControl(VectorEnv):
    """Base class: seeding, time limit, same-step autoreset and the ``final_obs`` info of rlx's vector env.

    Subclasses give the state width, one sub-env's reset draw and the batched dynamics.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    state_dim: int
    discrete: bool

    def __init__(self, env_id: str, num_envs: int, kwargs: dict[str, Any] | None = None,
                 max_episode_steps: int | None = None):
        template = gym.make(env_id, **dict(kwargs or {}))
        assert template.spec is not None  # gym.make always sets it
        self.spec = template.spec
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps if max_episode_steps is not None else template.spec.max_episode_steps
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._read_constants(template.unwrapped)
        template.close()
        self.state = np.zeros((num_envs, self.state_dim), dtype=F64)
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.rngs: list[np.random.Generator | None] = [None] * num_envs

    # -- what a task provides ----------------------------------------------------------------------
    def _read_constants(self, env: gym.Env) -> None:
        raise NotImplementedError

    def _reset_one(self, i: int, rng: np.random.Generator, options: dict | None) -> None:
        raise NotImplementedError

    def _dynamics(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every sub-env one step in place; return (reward float64 [n], terminated bool [n])."""
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    # -- the vector-env API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} sub-envs")
        for i, s in enumerate(seeds):
            # as gymnasium's Env.reset: a seed re-creates the generator; without one it goes on
            rng = self.rngs[i]
            if s is not None or rng is None:
                rng, _ = seeding.np_random(s)
                self.rngs[i] = rng
            self._reset_one(i, rng, options)
        self.elapsed[:] = 0
        return self._obs(), {}

    def step(self, actions):
        actions = np.asarray(actions)
        if self.discrete:
            # the single envs assert this; a wrong action must not silently become a valid one here
            if actions.shape != (self.num_envs,) or ((actions < 0) | (actions >= self.single_action_space.n)).any():
                raise ValueError(f"invalid actions {actions!r} for {self.num_envs} x {self.single_action_space}")
        else:
            actions = actions.reshape(self.num_envs, *self.single_action_space.shape)
        reward, terminated = self._dynamics(actions)
        self.elapsed += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self.elapsed >= self.max_episode_steps
        obs = self._obs()
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = obs[i].copy()
                self._reset_one(i, self.rngs[i], None)
            self.elapsed[done] = 0
            obs = self._obs()
            info = {"final_obs": final_obs, "_final_obs": done.copy(), "final_info": {}, "_final_info": done.copy()}
        return obs, reward, terminated, truncated, info

    # rlx's checkpoints pickle ``envs.envs`` (a SyncVectorEnv's sub-envs) and assign it back on resume
    # (rlx/train/session.py); this property is the same contract for the batched state, so a resumed run
    # continues mid-episode exactly.
    @property
    def envs(self) -> dict[str, Any]:
        return {"state": self.state.copy(), "elapsed": self.elapsed.copy(),
                "rngs": [None if g is None else g.bit_generator.state for g in self.rngs], **self._extra_state()}

    @envs.setter
    def envs(self, snapshot: dict[str, Any] | list[gym.Env]) -> None:
        if isinstance(snapshot, list):  # a checkpoint from before env.batched: the SyncVectorEnv's sub-envs
            snapshot = self._snapshot_of(snapshot)
        self.state, self.elapsed = snapshot["state"].copy(), snapshot["elapsed"].copy()
        for i, s in enumerate(snapshot["rngs"]):
            if s is None:
                self.rngs[i] = None
            else:
                rng, _ = seeding.np_random(0)
                rng.bit_generator.state = s
                self.rngs[i] = rng
        self._load_extra_state(snapshot)

    def _snapshot_of(self, sub_envs: list[gym.Env]) -> dict[str, Any]:
        """The batched state equal to these gymnasium sub-envs' (simulator state, TimeLimit count, RNG)."""
        if len(sub_envs) != self.num_envs:
            raise ValueError(f"{len(sub_envs)} sub-envs for {self.num_envs}")
        elapsed = []
        for env in sub_envs:
            w = env
            while isinstance(w, gym.Wrapper) and not isinstance(w, gym.wrappers.TimeLimit):
                w = w.env
            elapsed.append(w._elapsed_steps if isinstance(w, gym.wrappers.TimeLimit) else 0)
        raw = [np.asarray(cast(Any, e.unwrapped).state) for e in sub_envs]  # classic-control envs keep .state
        snapshot = {"state": np.stack(raw).astype(F64), "elapsed": np.asarray(elapsed, dtype=np.int64),
                    "rngs": [None if e.unwrapped._np_random is None else e.unwrapped._np_random.bit_generator.state
                             for e in sub_envs]}
        return {**snapshot, **self._extra_state_of(raw)}

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _extra_state_of(self, raw_states: list[np.ndarray]) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, snapshot: dict[str, Any]) -> None:
        pass


# What rlx.envs.make.make_vec_env builds. Both keep the sub-envs' state in ``.envs``, which checkpoints pickle
# (rlx/train/session.py: vector_env_state / restore_vector_env).
VecEnv: TypeAlias = "gym.vector.SyncVectorEnv | BatchedClassicControl"
