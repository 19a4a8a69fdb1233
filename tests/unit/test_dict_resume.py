"""Dict observations through the on-policy loop (issue 26): a PPO or A2C run on a Dict (vector keys, an image key,
a recurrent core) stopped mid-episode and resumed equals the straight run exactly; a recurrent population on a
Dict is its members' plain runs; `rlx eval` of a recurrent Dict checkpoint carries the state."""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import resume, train, train_job
from tests.conftest import run_cli
from tests.unit.test_one_driver import _assert_same_weights, _cfg, _lines

# 2 envs x 32 steps a rollout; PointGoal's episodes are 50 steps, so a stop at 128 steps (64 per env) is mid-episode
ON_POLICY = ["env=point_goal", "env.num_envs=2", "algo.n_steps=32", "network.hidden_sizes=[16]", "eval.every=128", "logger.every=64",
             "eval.episodes=2"]
PPO = ["algo=ppo", *ON_POLICY, "algo.batch_size=32", "algo.n_epochs=2"]
A2C = ["algo=a2c", *ON_POLICY]
IMAGE = ["+env.kwargs.image_size=5", "network=minatar_cnn"]
LSTM = ["network.recurrent=lstm", "network.recurrent_hidden=16"]


def _stop_and_resume(tmp_path, *overrides: str) -> None:
    train(_cfg(*overrides, "total_steps=256"), tmp_path / "straight")
    train(_cfg(*overrides, "total_steps=128"), tmp_path / "stopped")
    assert resume(tmp_path / "stopped", ["total_steps=256"])["env_steps"] == 256
    assert _lines(tmp_path / "straight", training_only=True) == _lines(tmp_path / "stopped", training_only=True)
    _assert_same_weights(tmp_path / "straight", tmp_path / "stopped")


@pytest.mark.parametrize("overrides", [PPO, A2C, [*PPO, *IMAGE], [*PPO, *LSTM], [*A2C, *IMAGE, "network.recurrent=gru",
                                                                                    "network.recurrent_hidden=16"]],
                         ids=["ppo", "a2c", "ppo-image", "ppo-lstm", "a2c-image-gru"])
def test_a_dict_run_stopped_mid_episode_resumes_exactly(tmp_path, overrides):
    _stop_and_resume(tmp_path, *overrides)


def _close_weights(a, b) -> None:
    wa = load_checkpoint(a / "checkpoints" / "last.pt", with_buffer=False)["algo"]["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt", with_buffer=False)["algo"]["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-6, msg=key)


def test_a_recurrent_population_on_a_dict_is_its_members_plain_runs(tmp_path):
    """To float32 rounding (the stacked CNN and LSTM are batched matmuls over members, which round
    differently from one member's): the same episodes, counts exact, losses and weights within 1e-4."""
    cfgs = [_cfg(*PPO, *IMAGE, *LSTM, "total_steps=256", f"seed={seed}") for seed in (1, 2)]
    train_job(cfgs, [tmp_path / "pop" / m for m in ("a", "b")])
    for cfg, m in zip(cfgs, ("a", "b"), strict=True):
        train(cfg, tmp_path / "plain" / m)
        pop, plain = _lines(tmp_path / "pop" / m), _lines(tmp_path / "plain" / m)
        assert [x.keys() for x in pop] == [x.keys() for x in plain]
        for x, y in zip(pop, plain, strict=True):
            assert (x["env_steps"], x.get("episodes")) == (y["env_steps"], y.get("episodes"))
            assert x == pytest.approx(y, rel=1e-4, abs=1e-6)
        _close_weights(tmp_path / "pop" / m, tmp_path / "plain" / m)


def test_rlx_eval_of_a_recurrent_dict_checkpoint_is_its_final_eval(tmp_path):
    """The final in-run evaluation and `rlx eval` run the same seeded episodes with the LSTM's state carried;
    a state dropped or reset at the wrong step in either would make them differ."""
    run = tmp_path / "run"
    summary = train(_cfg(*PPO, *LSTM, "total_steps=256", "eval.episodes=3"), run)
    r = run_cli("eval", str(run / "checkpoints" / "last.pt"), "--episodes", "3", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["return_mean"] == pytest.approx(summary["eval_return_mean"], abs=1e-4)


class PointGoalPixels(gym.ObservationWrapper):
    """PointGoal's image key alone: a plain (1, 5, 5) uint8 image observation (no Dict)."""

    def __init__(self, **kwargs):
        import rlx.envs  # noqa: F401  # registers PointGoal-v0

        super().__init__(gym.make("PointGoal-v0", image_size=5, **kwargs))
        self.observation_space = self.env.observation_space["image"]

    def observation(self, observation):
        return observation["image"]


@pytest.mark.parametrize("image", [["+env.kwargs.image_size=5"], ["env.id=tests.unit.test_dict_resume:PointGoalPixels"]],
                         ids=["dict", "pixels"])
def test_a_cnn_population_member_resumes_alone_and_evaluates_as_a_plain_run(tmp_path, image):
    """A member's checkpoint holds its rows of the stacked CNN in a plain run's layout (the plain run's CNN is a
    stack of one), so `rlx resume` of the member alone and `rlx eval` of its checkpoint load it as a plain run."""
    overrides = [*PPO, *image, "network=minatar_cnn", "total_steps=128"]
    train_job([_cfg(*overrides, f"seed={seed}") for seed in (1, 2)], [tmp_path / "pop" / m for m in ("a", "b")])
    assert resume(tmp_path / "pop" / "a", ["total_steps=256"])["env_steps"] == 256
    train(_cfg(*overrides[:-1], "total_steps=256", "seed=1"), tmp_path / "plain")
    _close_weights(tmp_path / "pop" / "a", tmp_path / "plain")
    r = run_cli("eval", str(tmp_path / "pop" / "b" / "checkpoints" / "last.pt"), "--episodes", "1", cwd=tmp_path,
                env={"PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == 0, r.stderr
