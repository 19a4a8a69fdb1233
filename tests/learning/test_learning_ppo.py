"""PPO learning tests (slow). Seeds 0, 1, 2 measured when these budgets were set (see README)."""
import pytest

from tests.learning.helpers import train_summary


@pytest.mark.slow
def test_ppo_solves_cartpole_within_100k(tmp_path):
    # measured: seeds 0/1/2 -> 500/500/500 at 100k steps, ~12 s each
    s = train_summary(["algo=ppo", "env=cartpole", "total_steps=100000", "seed=0", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= 475


@pytest.mark.slow
def test_ppo_learns_pendulum_within_100k(tmp_path):
    # continuous actions (Gaussian policy); measured: seeds 0/1/2 -> -144/-171/-159 at 100k (~20 s each).
    # Random policy ~ -1200; threshold -250 leaves margin for other seeds and platforms.
    s = train_summary(["algo=ppo", "env=pendulum", "total_steps=100000", "seed=1", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= -250
