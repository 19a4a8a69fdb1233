"""init_from (RL-Zoo's --trained-agent): a new run starting from a checkpoint's learned state, with its own
config's hyperparameters; what does not fit is one line."""
from __future__ import annotations

import pytest
import torch

from rlx.errors import UserError
from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import train, train_job
from tests.unit.test_one_driver import PPO, _cfg


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt", with_buffer=False)["algo"]["model"]


def test_a_run_from_a_checkpoint_starts_from_its_weights_with_its_own_hyperparameters(tmp_path):
    train(_cfg(*PPO, "total_steps=512", "algo.normalize_obs=true"), tmp_path / "source")
    # lr ~0: what the new run holds after training is what it started from
    summary = train(_cfg(*PPO, "total_steps=64", "algo.normalize_obs=true", "algo.lr=1e-12", "algo.anneal_lr=false",
                         f"init_from={tmp_path / 'source'}"), tmp_path / "warm")
    assert summary["env_steps"] == 64
    source, warm = _weights(tmp_path / "source"), _weights(tmp_path / "warm")
    for name, value in source.items():
        if "normalizer" in name:  # statistics went on updating with the new run's observations
            continue
        torch.testing.assert_close(warm[name], value, atol=1e-6, rtol=0, msg=name)
    state = load_checkpoint(tmp_path / "warm" / "checkpoints" / "last.pt", with_buffer=False)["algo"]
    assert float(state["hypers"]["values"]["lr"]) == pytest.approx(1e-12)  # its own config's, not the source's


def test_every_member_of_a_population_starts_from_the_checkpoint(tmp_path):
    train(_cfg(*PPO, "total_steps=256"), tmp_path / "source")
    cfgs = [_cfg(*PPO, "total_steps=64", "algo.lr=1e-12", "algo.anneal_lr=false", f"seed={s}",
                 f"init_from={tmp_path / 'source' / 'checkpoints' / 'last.pt'}") for s in (1, 2)]
    train_job(cfgs, [tmp_path / "a", tmp_path / "b"])
    for member in ("a", "b"):
        for name, value in _weights(tmp_path / "source").items():
            torch.testing.assert_close(_weights(tmp_path / member)[name], value, atol=1e-6, rtol=0)


@pytest.mark.parametrize("target,message", [
    ([*PPO, "network.hidden_sizes=[32]"], "its networks do not fit this config's"),
    (["algo=a2c", "env=cartpole", "network.hidden_sizes=[16]"], "a checkpoint of algo=ppo, not algo=a2c"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line(target, message, tmp_path):
    train(_cfg(*PPO, "total_steps=128"), tmp_path / "source")
    with pytest.raises(UserError, match=message):
        train(_cfg(*target, "total_steps=64", f"init_from={tmp_path / 'source'}"), tmp_path / "warm")
