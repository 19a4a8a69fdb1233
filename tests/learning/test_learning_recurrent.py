"""Recurrent PPO learning tests (slow, issue 26): CartPoleNoVel-v1 (CartPole with the velocities masked, RL-Zoo's
partially observable task) needs memory. Both runs use RL-Zoo's RecurrentPPO preset (conf/tuned/
ppo_cartpole_novel.yaml, applied by env=cartpole_novel); the memoryless one only sets network.recurrent=none.
Measured numbers: README, "Recurrent policies"."""
import pytest

from tests.learning.helpers import train_summary

NOVEL = ["algo=ppo", "env=cartpole_novel", "total_steps=100000", "seed=0", "eval.every=0"]


@pytest.mark.slow
def test_recurrent_ppo_solves_cartpole_novel_within_100k(tmp_path):
    s = train_summary(NOVEL, tmp_path)
    assert s["eval_return_mean"] >= 475


@pytest.mark.slow
def test_ppo_without_memory_does_not_solve_cartpole_novel_within_100k(tmp_path):
    s = train_summary([*NOVEL, "network.recurrent=none"], tmp_path)
    assert s["eval_return_mean"] < 475
