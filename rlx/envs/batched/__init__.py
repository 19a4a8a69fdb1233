"""Classic-control tasks with all sub-envs stepped as one NumPy batch (a drop-in for rlx's sync vector env).

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
modelled here are accepted (:data:`SUPPORTED_KWARGS`); anything else falls back to the sync vector env.

gymnasium's own ``CartPoleVectorEnv`` is not used: it autoresets on the *next* step (a dead step per
episode with reward 0 and ignored action, no ``final_obs``) and draws every sub-env's reset from one
shared generator, so it would change both what rlx's loops see and the trajectories of a seed.
"""
from __future__ import annotations

from typing import Any, TypeAlias, cast

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import utils as cc_utils
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlx.errors import UserError

F32, F64 = np.float32, np.float64


def _pow2(x: np.ndarray) -> np.ndarray:
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


class BatchedPendulum(BatchedClassicControl):
    state_dim, discrete = 2, False

    def _read_constants(self, env) -> None:
        self.g, self.m, self.length, self.dt = env.g, env.m, env.l, env.dt
        self.max_speed, self.max_torque = env.max_speed, env.max_torque

    def _reset_one(self, i, rng, options) -> None:
        from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y

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
        costs = _pow2(((th + np.pi) % (2 * np.pi)) - np.pi) + 0.1 * _pow2(thdot) + 0.001 * _pow2(u)
        newthdot = thdot + (3 * g / (2 * length) * np.sin(th) + 3.0 / (m * length**2) * u) * dt
        newthdot = np.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * dt
        self.state = np.stack((newth, newthdot), axis=1)
        return -costs.astype(F64), np.zeros(self.num_envs, dtype=bool)

    def _obs(self):
        th, thdot = self.state[:, 0], self.state[:, 1]
        return np.stack((np.cos(th), np.sin(th), thdot), axis=1).astype(F32)


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
        phi1 = (-m2 * l1 * lc2 * _pow2(dtheta2) * np.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - pi / 2) + phi2)
        if self.book_or_nips == "nips":
            ddtheta2 = (a + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + I2 - _pow2(d2) / d1)
        else:
            ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * _pow2(dtheta1) * np.sin(theta2) - phi2) / (
                m2 * lc2**2 + I2 - _pow2(d2) / d1)
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
        reward = np.where(terminated, 100.0, 0.0) - _pow2(a.astype(F64)) * 0.1
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


# What rlx.envs.make.make_vec_env builds. Both keep the sub-envs' state in ``.envs``, which checkpoints pickle
# (rlx/train/session.py: vector_env_state / restore_vector_env).
VecEnv: TypeAlias = "gym.vector.SyncVectorEnv | BatchedClassicControl"

# gymnasium entry point -> (batched class, the constructor kwargs whose effect it models)
BATCHED: dict[str, tuple[type[BatchedClassicControl], frozenset[str]]] = {
    "gymnasium.envs.classic_control.cartpole:CartPoleEnv": (BatchedCartPole, frozenset({"sutton_barto_reward"})),
    "gymnasium.envs.classic_control.pendulum:PendulumEnv": (BatchedPendulum, frozenset({"g"})),
    "gymnasium.envs.classic_control.acrobot:AcrobotEnv": (BatchedAcrobot, frozenset()),
    "gymnasium.envs.classic_control.mountain_car:MountainCarEnv": (BatchedMountainCar, frozenset({"goal_velocity"})),
    "gymnasium.envs.classic_control.continuous_mountain_car:Continuous_MountainCarEnv": (
        BatchedMountainCarContinuous, frozenset({"goal_velocity"})),
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


_BATCHED_IDS = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0")
