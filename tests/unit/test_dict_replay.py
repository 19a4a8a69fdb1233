"""Dict observations for the off-policy algorithms (issue 26): the replay buffer of a Dict with image keys
(uint8 per image key, the float keys in the float row, minibatches packed as the networks take them), its
checkpoint round trip, which buffer each space gets, and SAC/TD3/DDPG/discrete SAC on Dict observations: on a
Dict of vectors exactly the run on the same env flattened; with an image key a run that stops and resumes exactly."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.buffers.replay import DictReplayBuffer, MemberReplayBuffer, ReplayBuffer, make_replay_buffer
from rlx.errors import UserError
from rlx.networks.dict_obs import PackedDict
from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import resume, train, train_job
from tests.unit.test_one_driver import _assert_same_weights, _cfg, _lines

SPACE = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (1, 3, 3), np.uint8),
                         "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
PACKED = PackedDict(SPACE)
CPU = torch.device("cpu")


def _step(n: int) -> np.ndarray:
    """``n`` packed observations of SPACE (images: integers 0..255 in float32, as PackDictObs gives them)."""
    return np.stack([PACKED.layout.pack(SPACE.sample()) for _ in range(n)]).astype(np.float32)


def _fill(buffer, steps: int = 5, n: int = 2, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``steps`` vector-env steps of ``n`` envs, env 1's episode ending at step 2 (its s' from info's final_obs);
    returns each step's (s, a, reached s', terminated)."""
    rng = np.random.default_rng(seed)
    SPACE.seed(seed)
    obs, added = _step(n), []
    for t in range(steps):
        next_obs, actions = _step(n), rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        info: dict = {}
        reached = next_obs.copy()
        if t == 2:
            terminated[1] = True
            final = _step(1)[0]
            info = {"final_obs": np.array([None, final], dtype=object), "_final_obs": np.array([False, True])}
            reached[1] = final
        buffer.add(obs, actions, next_obs, rng.normal(size=n).astype(np.float32), terminated, truncated, info)
        added.append((obs, actions, reached, terminated))
        obs = next_obs
    return added


def test_a_dict_with_image_keys_is_stored_as_uint8_and_sampled_packed():
    buffer = make_replay_buffer(100, PACKED, (2,), False, CPU)
    assert isinstance(buffer, DictReplayBuffer)
    assert buffer.images["image"].dtype == torch.uint8 and buffer.data.shape[1] == 2 + 2 + 2 + 2  # s, a, r, d, s' floats
    added = _fill(buffer)
    got = buffer.gather(torch.arange(len(buffer)))
    want_obs = np.concatenate([s for s, _, _, _ in added])
    want_next = np.concatenate([r for _, _, r, _ in added])
    np.testing.assert_array_equal(got.obs.numpy(), want_obs)  # every key, the image's integers exact
    np.testing.assert_array_equal(got.next_obs.numpy(), want_next)  # env 1's final observation at its episode's end
    np.testing.assert_array_equal(got.actions.numpy(), np.concatenate([a for _, a, _, _ in added]))
    np.testing.assert_array_equal(got.terminated.numpy(), np.concatenate([d for _, _, _, d in added]).astype(np.float32))
    assert got.obs.dtype == torch.float32 and got.obs.shape == (10, PACKED.layout.size)
    assert buffer.sample(4).obs.shape == (4, PACKED.layout.size)


def test_the_dict_replay_buffer_round_trips_through_its_state_and_refuses_another_capacity():
    buffer = make_replay_buffer(8, PACKED, (2,), False, CPU)
    _fill(buffer, steps=6)  # 12 transitions in a ring of 8: wrapped
    state = buffer.state_dict()
    assert state["images"]["image"].dtype == torch.uint8
    other = make_replay_buffer(8, PACKED, (2,), False, CPU)
    other.load_state_dict(state)
    rows = torch.arange(8)
    for a, b in zip(buffer.gather(rows), other.gather(rows), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (other.pos, len(other)) == (buffer.pos, len(buffer))
    with pytest.raises(ValueError, match="capacity 8, this run 16"):
        make_replay_buffer(16, PACKED, (2,), False, CPU).load_state_dict(state)
    flat = make_replay_buffer(8, gym.spaces.Box(-1, 1, (PACKED.layout.size,), np.float32), (2,), False, CPU)
    with pytest.raises(ValueError, match="Dict observations"):
        DictReplayBuffer(8, PACKED.layout, (2,), False, CPU).load_state_dict(flat.state_dict())


def test_each_observation_space_gets_its_buffer():
    vectors = PackedDict(gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Box(-1, 1, (3,))}))
    assert type(make_replay_buffer(10, vectors, (1,), False, CPU)) is ReplayBuffer  # the packed row is per-key float32
    assert type(make_replay_buffer(10, vectors, (1,), False, CPU, members=2)) is MemberReplayBuffer
    assert type(make_replay_buffer(10, PACKED, (1,), False, CPU)) is DictReplayBuffer


POINT_GOAL = ["env=point_goal", "network.hidden_sizes=[16]", "env.num_envs=2", "eval.every=100", "eval.episodes=1",
              "algo.learning_starts=50", "algo.batch_size=32"]
FLATTENED = "env.wrappers=[{_target_: gymnasium.wrappers.FlattenObservation}]"  # a Box: no Dict path anywhere


@pytest.mark.parametrize("algo", ["sac", "sac_v", "offpolicy_ac", "td3", "ddpg"])
def test_an_off_policy_run_on_a_dict_of_vectors_is_the_run_on_its_flattened_box(algo, tmp_path):
    """gymnasium's FlattenObservation concatenates a Dict's keys in the space's order, as the packing does: the
    two runs (packed Dict + weightless DictEncoder vs a plain Box) must agree on every metric and weight."""
    dict_run = train(_cfg(f"algo={algo}", *POINT_GOAL, "total_steps=300"), tmp_path / "dict")
    box_run = train(_cfg(f"algo={algo}", *POINT_GOAL, "total_steps=300", FLATTENED), tmp_path / "box")
    assert dict_run["eval_return_mean"] == box_run["eval_return_mean"]
    assert _lines(tmp_path / "dict") == _lines(tmp_path / "box")
    _assert_same_weights(tmp_path / "dict", tmp_path / "box")


class CartPoleDict(gym.ObservationWrapper):
    """CartPole-v1 with its observation split into a Dict {cart, pole} (discrete actions on a Dict)."""

    def __init__(self, **kwargs):
        super().__init__(gym.make("CartPole-v1", **kwargs))
        box = self.env.observation_space
        self.observation_space = gym.spaces.Dict({"cart": gym.spaces.Box(box.low[:2], box.high[:2]),
                                                  "pole": gym.spaces.Box(box.low[2:], box.high[2:])})

    def observation(self, observation):
        return {"cart": observation[:2], "pole": observation[2:]}


def test_discrete_sac_on_a_dict_of_vectors_is_the_run_on_its_flattened_box(tmp_path):
    cartpole = ["algo=sac_discrete", "env.id=tests.unit.test_dict_replay:CartPoleDict", *POINT_GOAL[1:], "total_steps=300"]
    dict_run = train(_cfg(*cartpole), tmp_path / "dict")
    box_run = train(_cfg(*cartpole, FLATTENED), tmp_path / "box")
    assert dict_run["eval_return_mean"] == box_run["eval_return_mean"]
    assert _lines(tmp_path / "dict") == _lines(tmp_path / "box")
    _assert_same_weights(tmp_path / "dict", tmp_path / "box")


def test_a_population_on_a_dict_of_vectors_is_its_members_plain_runs(tmp_path):
    cfgs = [_cfg("algo=sac", *POINT_GOAL, "total_steps=300", f"seed={seed}") for seed in (1, 2)]
    train_job(cfgs, [tmp_path / "pop" / m for m in ("a", "b")])
    for cfg, m in zip(cfgs, ("a", "b"), strict=True):
        train(cfg, tmp_path / "plain" / m)
        assert _lines(tmp_path / "pop" / m) == _lines(tmp_path / "plain" / m)
        _assert_same_weights(tmp_path / "pop" / m, tmp_path / "plain" / m)


IMAGE = [*POINT_GOAL, "+env.kwargs.image_size=5", "network=minatar_cnn"]


def test_sac_with_an_image_key_stops_and_resumes_exactly(tmp_path):
    """A CNN on the image key, the float keys as they are; the checkpoint carries the uint8 image replay."""
    every = "logger.every=100"
    train(_cfg("algo=sac", *IMAGE, "total_steps=400", every), tmp_path / "straight")
    train(_cfg("algo=sac", *IMAGE, "total_steps=200", every), tmp_path / "stopped")
    buffer = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["loop"]["buffer"]
    assert buffer["images"]["image"].dtype == torch.uint8 and buffer["images"]["image"].shape == (200, 2, 25)
    assert resume(tmp_path / "stopped", ["total_steps=400"])["env_steps"] == 400
    assert _lines(tmp_path / "straight", training_only=True) == _lines(tmp_path / "stopped", training_only=True)
    _assert_same_weights(tmp_path / "straight", tmp_path / "stopped")


def test_a_population_on_a_dict_with_image_keys_is_refused_before_any_run_dir(tmp_path):
    cfgs = [_cfg("algo=sac", *POINT_GOAL, "+env.kwargs.image_size=5", "total_steps=300", f"seed={s}") for s in (1, 2)]
    dirs = [tmp_path / m for m in ("a", "b")]
    with pytest.raises(UserError, match=r"^a population of 2 on Dict observations with image keys \(image\) is not supported"):
        train_job(cfgs, dirs)
    assert not any(d.exists() for d in dirs)
