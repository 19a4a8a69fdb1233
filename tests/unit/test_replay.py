"""Replay buffer: ring wraparound, truncation vs termination with a real vector env, sampling, persistence."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.buffers.replay import ReplayBuffer

CPU = torch.device("cpu")


def add_one(buf: ReplayBuffer, value: float, n: int = 1) -> None:
    """n transitions whose fields all encode ``value`` (+ env index / 100)."""
    v = value + np.arange(n)[:, None] / 100.0
    no = np.zeros(n, dtype=bool)
    buf.add(v.repeat(2, 1), v, v.repeat(2, 1) + 0.5, v[:, 0], no, no, {})


def stored_obs(buf: ReplayBuffer) -> list[float]:
    return buf.data[: buf.size, buf.cols["obs"]][:, 0].tolist()


def test_capacity_wraparound_overwrites_oldest() -> None:
    buf = ReplayBuffer(5, (2,), (1,), False, CPU)
    for i in range(7):
        add_one(buf, float(i))
    assert (len(buf), buf.pos) == (5, 2)
    assert stored_obs(buf) == [5.0, 6.0, 2.0, 3.0, 4.0]  # 0 and 1 overwritten, in place


def test_vector_add_wraps_across_the_end() -> None:
    buf = ReplayBuffer(5, (2,), (1,), False, CPU)
    add_one(buf, 1.0, n=3)  # rows 0..2
    add_one(buf, 2.0, n=3)  # rows 3, 4, then 0
    assert (len(buf), buf.pos) == (5, 1)
    np.testing.assert_allclose(stored_obs(buf), [2.02, 1.01, 1.02, 2.0, 2.01])


class Counter(gym.Env):
    """obs = [t, episode]; terminates at t == terminate_at (if set). Wrap in TimeLimit to truncate."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, terminate_at: int | None):
        self.terminate_at, self.episode, self.t = terminate_at, -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t == self.terminate_at, False, {}


def test_truncation_vs_termination_with_vector_env_final_obs() -> None:
    # env 0 terminates at t=3; env 1 never terminates but is truncated by a 2-step time limit.
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.TimeLimit(Counter(3), 10), lambda: gym.wrappers.TimeLimit(Counter(None), 2)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    buf = ReplayBuffer(100, (2,), (1,), False, CPU)
    obs, _ = envs.reset(seed=0)
    for _ in range(4):
        actions = np.zeros((2, 1), dtype=np.float32)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        buf.add(obs, actions, next_obs, rewards, terminated, truncated, info)
        obs = next_obs
    c = buf.cols
    s, s2, term = buf.data[:8, c["obs"]], buf.data[:8, c["next_obs"]], buf.data[:8, c["terminated"]]
    env0, env1 = slice(0, 8, 2), slice(1, 8, 2)  # rows alternate env 0, env 1
    # env 0: s' of its 3rd step is the terminal state [3, 0] (not the reset obs [0, 1]); terminated there only
    torch.testing.assert_close(s2[env0], torch.tensor([[1.0, 0], [2, 0], [3, 0], [1, 1]]))
    torch.testing.assert_close(term[env0], torch.tensor([0.0, 0, 1, 0]))
    torch.testing.assert_close(s[env0][3], torch.tensor([0.0, 1]))  # next episode starts from the reset obs
    # env 1: truncated at t=2: s' is the real last state [2, 0] and terminated stays 0 (bootstraps)
    torch.testing.assert_close(s2[env1], torch.tensor([[1.0, 0], [2, 0], [1, 1], [2, 1]]))
    torch.testing.assert_close(term[env1], torch.zeros(4))
    envs.close()


def test_sample_shapes_and_dtypes() -> None:
    buf = ReplayBuffer(50, (3,), (2,), False, CPU)
    for i in range(10):
        add_one_wide(buf, i)
    b = buf.sample(32)
    assert b.obs.shape == (32, 3) and b.next_obs.shape == (32, 3) and b.actions.shape == (32, 2)
    assert b.rewards.shape == (32,) and b.terminated.shape == (32,)
    assert all(t.dtype == torch.float32 for t in b)
    # every sampled row is one stored transition (fields stay aligned)
    torch.testing.assert_close(b.next_obs, b.obs + 1.0)
    torch.testing.assert_close(b.rewards, b.obs[:, 0])

    disc = ReplayBuffer(50, (4,), (), True, CPU)
    no = np.zeros(2, dtype=bool)
    disc.add(np.ones((2, 4)), np.array([0, 1]), np.ones((2, 4)), np.zeros(2), no, no, {})
    b = disc.sample(8)
    assert b.actions.shape == (8,) and b.actions.dtype == torch.long and set(b.actions.tolist()) <= {0, 1}


def add_one_wide(buf: ReplayBuffer, i: int) -> None:
    obs = np.full((1, 3), float(i))
    no = np.zeros(1, dtype=bool)
    buf.add(obs, np.full((1, 2), -float(i)), obs + 1.0, np.array([float(i)]), no, no, {})


def test_sample_is_uniform_over_stored_rows_only() -> None:
    buf = ReplayBuffer(1000, (3,), (2,), False, CPU)
    for i in range(4):
        add_one_wide(buf, i)
    torch.manual_seed(0)
    counts = torch.bincount(buf.sample(4000).obs[:, 0].long(), minlength=4)
    assert counts.shape == (4,) and (counts > 800).all()  # ~1000 each, nothing from unwritten rows


@pytest.mark.parametrize("n_added", [3, 12])  # partly filled, and wrapped around
def test_state_dict_round_trip(n_added: int) -> None:
    buf = ReplayBuffer(8, (3,), (2,), False, CPU)
    for i in range(n_added):
        add_one_wide(buf, i)
    state = buf.state_dict()
    assert state["data"].shape[0] == len(buf)  # only the filled rows are saved
    fresh = ReplayBuffer(8, (3,), (2,), False, CPU)
    fresh.load_state_dict(state)
    assert (fresh.pos, len(fresh)) == (buf.pos, len(buf))
    torch.testing.assert_close(fresh.data[: len(buf)], buf.data[: len(buf)])
    torch.manual_seed(1)
    a = buf.sample(16)
    torch.manual_seed(1)
    b = fresh.sample(16)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    # the two buffers keep evolving identically
    add_one_wide(buf, 99)
    add_one_wide(fresh, 99)
    torch.testing.assert_close(fresh.data[: len(buf)], buf.data[: len(buf)])


def test_load_into_smaller_capacity_keeps_newest() -> None:
    buf = ReplayBuffer(6, (3,), (2,), False, CPU)
    for i in range(9):  # wrapped: holds 3..8
        add_one_wide(buf, i)
    small = ReplayBuffer(4, (3,), (2,), False, CPU)
    small.load_state_dict(buf.state_dict())
    assert len(small) == 4 and small.data[:, 0].tolist() == [5.0, 6.0, 7.0, 8.0]
    with pytest.raises(ValueError, match="width"):
        ReplayBuffer(4, (5,), (2,), False, CPU).load_state_dict(buf.state_dict())
