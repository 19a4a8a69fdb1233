"""RL-Zoo's NoVel tasks (rlx.envs.novel): the velocity masks as RL-Zoo defines them, the registered ids against
the base env wrapped by hand (RL-Zoo's construction) step for step, and the batched twins against
gymnasium's vector env over the registered ids."""
from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from rlx.config.compose import compose_config
from rlx.envs import MaskVelocity
from rlx.envs.batched import batched_class, make_batched_vec_env
from rlx.envs.make import make_vec_env
from rlx.envs.novel import NOVEL_IDS, VELOCITY_INDICES
from tests.unit.test_batched_envs import assert_same_step, random_actions, reference

# RL-Zoo's MaskVelocityWrapper.velocity_indices (rl_zoo3/wrappers.py), written out: the entries set to 0
RL_ZOO_VELOCITY_INDICES = {"CartPole-v1": [1, 3], "MountainCar-v0": [1], "MountainCarContinuous-v0": [1], "Pendulum-v1": [2]}
# what stays visible: CartPole's x and theta, Pendulum's cos and sin of the angle, MountainCar's position
KEPT = {"CartPoleNoVel-v1": [0, 2], "PendulumNoVel-v1": [0, 1], "MountainCarNoVel-v0": [0], "MountainCarContinuousNoVel-v0": [0]}


def test_the_masks_are_rl_zoos():
    assert {k: list(v) for k, v in VELOCITY_INDICES.items()} == RL_ZOO_VELOCITY_INDICES
    assert set(NOVEL_IDS) == set(KEPT)
    for novel_id, (base_id, _) in NOVEL_IDS.items():
        base, novel = gym.spec(base_id), gym.spec(novel_id)
        assert novel_id == base_id.replace("-v", "NoVel-v")  # RL-Zoo's naming
        assert (novel.max_episode_steps, novel.reward_threshold) == (base.max_episode_steps, base.reward_threshold)
        env = gym.make(novel_id)
        assert env.observation_space == gym.make(base_id).observation_space  # shape and bounds kept, as RL-Zoo's
        mask = env.get_wrapper_attr("mask")
        assert np.flatnonzero(mask).tolist() == KEPT[novel_id]


@pytest.mark.parametrize("novel_id", list(NOVEL_IDS))
def test_a_novel_id_is_its_base_env_with_the_velocities_zeroed_step_for_step(novel_id):
    """gym.make(NoVel id) == RL-Zoo's construction, MaskVelocity(gym.make(base id)), and == the base env's
    observation with the velocity entries set to 0 (rewards and episode ends untouched), over 2 episodes'
    worth of random actions including the time limit."""
    base_id = NOVEL_IDS[novel_id][0]
    novel, zoo, base = gym.make(novel_id), MaskVelocity(gym.make(base_id)), gym.make(base_id)
    velocities = VELOCITY_INDICES[base_id]
    o_novel, o_zoo, o_base = (e.reset(seed=4)[0] for e in (novel, zoo, base))
    np.testing.assert_array_equal(o_novel, o_zoo)
    np.testing.assert_array_equal(np.delete(o_novel, velocities), np.delete(o_base, velocities))
    rng = np.random.default_rng(0)
    ends = 0
    for t in range(2 * gym.spec(base_id).max_episode_steps + 5):
        action = random_actions(base.action_space, rng, 1)[0]
        steps = [e.step(action) for e in (novel, zoo, base)]
        (o_novel, *rest_novel), (o_zoo, *rest_zoo), (o_base, *rest_base) = (s[:4] for s in steps)
        np.testing.assert_array_equal(o_novel, o_zoo, err_msg=f"step {t}")
        assert o_novel.dtype == o_base.dtype
        expected = o_base.copy()
        expected[list(velocities)] = 0
        np.testing.assert_array_equal(o_novel, expected, err_msg=f"step {t}")
        assert rest_novel == rest_zoo == rest_base
        if rest_base[1] or rest_base[2]:  # an episode end: all three start the next one from the same seed
            ends += 1
            o_novel, o_zoo, o_base = (e.reset(seed=t)[0] for e in (novel, zoo, base))
            np.testing.assert_array_equal(o_novel, o_zoo)
            assert np.all(o_novel[list(velocities)] == 0)
            np.testing.assert_array_equal(np.delete(o_novel, velocities), np.delete(o_base, velocities))
    assert ends >= 1


def test_the_wrapper_finds_the_velocities_of_a_known_id_and_refuses_an_unknown_one():
    env = MaskVelocity(gym.make("CartPole-v1"))
    assert env.velocity_indices == (1, 3)
    with pytest.raises(ValueError, match="no velocity entries known for Acrobot-v1"):
        MaskVelocity(gym.make("Acrobot-v1"))


# episodes of the NoVel tasks, driven by a controller on the hidden (true) state so goal tasks also terminate
def _controller(base_id: str, state: np.ndarray) -> np.ndarray | None:
    if base_id == "MountainCar-v0":
        return np.where(state[:, 1] >= 0, 2, 0)
    if base_id == "MountainCarContinuous-v0":
        return np.where(state[:, 1:2] >= 0, 1.0, -1.0).astype(np.float32)
    return None


@pytest.mark.parametrize("novel_id, steps", [("CartPoleNoVel-v1", 500), ("PendulumNoVel-v1", 260),
                                             ("MountainCarNoVel-v0", 300), ("MountainCarContinuousNoVel-v0", 1040)])
def test_the_batched_twin_matches_gymnasiums_vector_env_step_for_step(novel_id, steps):
    """The batched NoVel env (what env.batched=auto picks from 4 envs) vs SyncVectorEnv over gym.make(NoVel id):
    obs (velocities 0), rewards, terminated, truncated and final_obs at every step."""
    n, base_id = 4, NOVEL_IDS[novel_id][0]
    assert batched_class(novel_id) is not None and type(make_vec_env(novel_id, n, 0)).__name__.endswith("NoVel")
    ref_env, env = reference(novel_id, n), make_batched_vec_env(novel_id, n)
    assert env.single_observation_space == ref_env.single_observation_space
    assert env.single_action_space == ref_env.single_action_space
    np.testing.assert_array_equal(env.reset(seed=7)[0], ref_env.reset(seed=7)[0])
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        a = random_actions(env.single_action_space, rng, n)
        hidden = np.stack([np.asarray(e.unwrapped.state, dtype=np.float64) for e in ref_env.envs])
        c = _controller(base_id, hidden)
        if c is not None:
            use = (rng.random(n) < 0.9) & (np.arange(n) < 2)
            a = np.where(use.reshape(-1, *[1] * (a.ndim - 1)), c, a).astype(a.dtype)
        ref = ref_env.step(a)
        got = env.step(a)
        assert_same_step(t, ref, got)
        assert np.all(got[0][:, list(VELOCITY_INDICES[base_id])] == 0)
        ends["terminated"] += int(ref[2].sum())
        ends["truncated"] += int(ref[3].sum())
    if base_id != "Pendulum-v1":
        assert ends["terminated"] > 0, ends
    if base_id != "CartPole-v1":
        assert ends["truncated"] > 0, ends


def test_the_batched_twin_resumes_a_sync_vector_env_checkpoint():
    """A checkpoint's sub-envs (SyncVectorEnv over the NoVel id) continue exactly in the batched twin."""
    ref_env = reference("CartPoleNoVel-v1", 4, max_episode_steps=25)
    ref_env.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(30):
        ref_env.step(random_actions(ref_env.single_action_space, rng, 4))
    env = make_batched_vec_env("CartPoleNoVel-v1", 4, max_episode_steps=25)
    env.envs = pickle.loads(pickle.dumps(ref_env.envs))
    for t in range(60):
        a = random_actions(ref_env.single_action_space, rng, 4)
        assert_same_step(t, ref_env.step(a), env.step(a))


@pytest.mark.parametrize("group, env_id", [("cartpole_novel", "CartPoleNoVel-v1"), ("pendulum_novel", "PendulumNoVel-v1"),
                                           ("mountaincar_continuous_novel", "MountainCarContinuousNoVel-v0")])
def test_env_groups_select_the_novel_ids(group, env_id):
    assert compose_config([f"env={group}"]).env.id == env_id
    assert compose_config([f"env.id={env_id}"]).env.id == env_id
