"""The batched classic-control envs against gymnasium's own single envs in rlx's sync vector env setup.

Every step compares obs, reward, terminated, truncated and the autoreset's ``final_obs`` (to 1e-6), over
action sequences that mix uniform random actions (continuous ones partly outside the Box, to exercise the
clipping) with a simple controller that reaches the goal, so that terminations, time-limit truncations
and the resets after both all occur.
"""
from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from rlx.envs.batched import AUTO_MIN_ENVS, BatchedCartPole, BatchedPendulum, batched_class, make_batched_vec_env, select_batched
from rlx.errors import UserError

N = 4


def reference(env_id: str, num_envs: int, kwargs: dict | None = None, max_episode_steps: int | None = None):
    """What rlx.envs.make.make_vec_env builds without batching: SyncVectorEnv, same-step autoreset."""
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, max_episode_steps=max_episode_steps, **(kwargs or {}))] * num_envs,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def controller(env_id: str, obs: np.ndarray) -> np.ndarray:
    """Goal-reaching actions (energy pumping), so that episodes also end by termination."""
    if env_id == "MountainCar-v0":
        return np.where(obs[:, 1] >= 0, 2, 0)
    if env_id == "MountainCarContinuous-v0":
        return np.where(obs[:, 1:2] >= 0, 1.0, -1.0).astype(np.float32)
    if env_id == "Acrobot-v1":
        return np.where(obs[:, 5] >= 0, 2, 0)  # torque with the second joint's velocity
    raise KeyError(env_id)


def random_actions(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return rng.uniform(1.3 * space.low, 1.3 * space.high, size=(n, *space.shape)).astype(np.float32)


def assert_same_step(step, ref, got):
    (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = ref, got
    np.testing.assert_allclose(o2, o1, rtol=0, atol=1e-6, err_msg=f"obs at step {step}")
    np.testing.assert_allclose(r2, r1, rtol=0, atol=1e-6, err_msg=f"reward at step {step}")
    np.testing.assert_array_equal(te2, te1, err_msg=f"terminated at step {step}")
    np.testing.assert_array_equal(tr2, tr1, err_msg=f"truncated at step {step}")
    assert o2.dtype == o1.dtype and r2.dtype == r1.dtype and te2.dtype == te1.dtype == tr2.dtype
    assert ("final_obs" in i2) == ("final_obs" in i1), f"final_obs presence at step {step}"
    if "final_obs" in i1:
        np.testing.assert_array_equal(i2["_final_obs"], i1["_final_obs"])
        for k in np.flatnonzero(i1["_final_obs"]):
            np.testing.assert_allclose(i2["final_obs"][k], i1["final_obs"][k], rtol=0, atol=1e-6,
                                       err_msg=f"final_obs at step {step}, env {k}")


# env id, kwargs, max_episode_steps override, steps, share of controller actions in sub-envs 0 and 1
# (sub-envs 2 and 3 act at random, so that goal tasks also run into their time limit)
CASES = [
    ("CartPole-v1", {}, None, 500, 0.0),
    ("CartPole-v1", {"sutton_barto_reward": True}, 12, 200, 0.0),  # truncation before most terminations
    ("Pendulum-v1", {}, None, 260, 0.0),  # the 200-step time limit
    ("Pendulum-v1", {"g": 9.81}, 30, 100, 0.0),
    ("Acrobot-v1", {}, None, 560, 0.9),
    ("MountainCar-v0", {}, None, 300, 0.8),
    ("MountainCarContinuous-v0", {}, None, 1040, 0.8),  # its 999-step limit
    ("MountainCarContinuous-v0", {"goal_velocity": 0.01}, 150, 400, 0.9),
]


@pytest.mark.parametrize("env_id,kwargs,max_steps,steps,p_controller", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_gymnasium_step_for_step(env_id, kwargs, max_steps, steps, p_controller):
    ref_env = reference(env_id, N, kwargs, max_steps)
    env = make_batched_vec_env(env_id, N, kwargs, max_steps)
    assert env.single_observation_space == ref_env.single_observation_space
    assert env.single_action_space == ref_env.single_action_space
    assert env.metadata["autoreset_mode"] == ref_env.metadata["autoreset_mode"]
    o1, _ = ref_env.reset(seed=7)
    o2, _ = env.reset(seed=7)
    np.testing.assert_allclose(o2, o1, rtol=0, atol=1e-6)
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        if t == steps - 30:  # re-seeding late in the run (after the time limits) re-creates every generator
            o1, _ = ref_env.reset(seed=123)
            o2, _ = env.reset(seed=123)
            np.testing.assert_allclose(o2, o1, rtol=0, atol=1e-6)
        a = random_actions(env.single_action_space, rng, N)
        if p_controller:
            use = (rng.random(N) < p_controller) & (np.arange(N) < 2)
            c = controller(env_id, o1)
            a = np.where(use.reshape(-1, *[1] * (a.ndim - 1)), c, a).astype(a.dtype)
        ref = ref_env.step(a)
        got = env.step(a)
        assert_same_step(t, ref, got)
        o1 = ref[0]
        ends["terminated"] += int(ref[2].sum())
        ends["truncated"] += int(ref[3].sum())
    # the comparison covered both kinds of episode end (so the test can catch a wrong autoreset)
    if env_id != "Pendulum-v1":
        assert ends["terminated"] > 0, ends
    if env_id != "CartPole-v1" or max_steps is not None:
        assert ends["truncated"] > 0, ends


def test_snapshot_continues_exactly():
    """The ``envs`` snapshot rlx's checkpoints pickle restores the state, time-limit counters and RNGs."""
    env = make_batched_vec_env("CartPole-v1", N, max_episode_steps=20)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(15):
        env.step(rng.integers(0, 2, size=N))
    blob = pickle.dumps(env.envs)
    actions = [rng.integers(0, 2, size=N) for _ in range(40)]
    expected = [env.step(a) for a in actions]
    restored = make_batched_vec_env("CartPole-v1", N, max_episode_steps=20)
    restored.envs = pickle.loads(blob)
    for a, ref in zip(actions, expected, strict=True):
        got = restored.step(a)
        for x, y in zip(ref[:4], got[:4], strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0"])
def test_resumes_a_sync_vector_env_checkpoint(env_id):
    """A checkpoint from before env.batched holds the SyncVectorEnv's sub-envs; the batched env continues
    them exactly (state, time-limit counts, reset RNGs), with a sub-env fresh from a reset included."""
    ref_env = reference(env_id, N, max_episode_steps=25)
    ref_env.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(30):
        ref_env.step(random_actions(ref_env.single_action_space, rng, N))
    blob = pickle.dumps(ref_env.envs)
    ref_env.envs[0].reset()  # both continue from a fresh episode in sub-env 0
    env = make_batched_vec_env(env_id, N, max_episode_steps=25)
    env.envs = pickle.loads(blob)
    env.envs = {**env.envs}  # round trip through the batched snapshot too
    env._reset_one(0, env.rngs[0], None)
    env.elapsed[0] = 0
    for t in range(60):
        a = random_actions(ref_env.single_action_space, rng, N)
        assert_same_step(t, ref_env.step(a), env.step(a))


def test_continuous_mountain_car_snapshot_keeps_fresh_flags():
    env = make_batched_vec_env("MountainCarContinuous-v0", 2)
    env.reset(seed=0)
    restored = make_batched_vec_env("MountainCarContinuous-v0", 2)
    restored.envs = pickle.loads(pickle.dumps(env.envs))
    a = np.array([[0.3], [-0.7]], dtype=np.float32)
    np.testing.assert_array_equal(env.step(a)[0], restored.step(a)[0])


def test_only_what_is_modelled_is_batched():
    assert batched_class("CartPole-v1") is BatchedCartPole
    assert batched_class("CartPole-v0") is BatchedCartPole  # same entry point, its own time limit
    assert batched_class("CartPole-v1", {"render_mode": "rgb_array"}) is None
    assert batched_class("Pendulum-v1", {"g": 9.81}) is not None
    assert batched_class("Pendulum-v1", {"max_speed": 4}) is None
    assert batched_class("LunarLander-v3") is None
    assert batched_class("no-such-env-v0") is None


def test_invalid_discrete_action_is_an_error():
    env = make_batched_vec_env("CartPole-v1", 2)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(np.array([0, 2]))


def test_env_batched_selection():
    """env.batched: auto batches from AUTO_MIN_ENVS sub-envs where an implementation exists; true insists
    (a one-line error where there is none); false never batches."""
    assert select_batched("Pendulum-v1", AUTO_MIN_ENVS, {}, None, "auto") is BatchedPendulum
    assert select_batched("Pendulum-v1", AUTO_MIN_ENVS - 1, {}, None, "auto") is None
    assert select_batched("Pendulum-v1", 1, {}, None, True) is BatchedPendulum
    assert select_batched("Pendulum-v1", 16, {}, None, False) is None
    assert select_batched("Pendulum-v1", 16, {}, "rgb_array", "auto") is None  # rendering: per-env
    assert select_batched("LunarLander-v3", 16, {}, None, "auto") is None
    with pytest.raises(UserError, match="no batched implementation"):
        select_batched("Pendulum-v1", 4, {"max_speed": 4.0}, None, True)
    with pytest.raises(UserError):
        select_batched("Pendulum-v1", 4, {}, None, "sometimes")
