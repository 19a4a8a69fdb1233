"""TRPO learning tests (slow). Seeds 0, 1, 2 measured when these budgets were set (see README)."""
import pytest

from tests.learning.helpers import train_summary


@pytest.mark.slow
def test_trpo_solves_cartpole_within_100k(tmp_path):
    # RL-Zoo preset (2 envs x 512 steps); measured: seeds 0/1/2 -> 500/500/500 at 100k
    s = train_summary(["algo=trpo", "env=cartpole", "total_steps=100000", "seed=0", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= 475


@pytest.mark.slow
def test_trpo_learns_pendulum_within_82k(tmp_path):
    # RL-Zoo preset without gSDE (2 envs x 1024 steps, gamma 0.9, 15 critic epochs); measured with the member
    # dimension (issue 22) at 81,920 steps (40 updates): seeds 0/1/2 -> -144/-171/-157 (at 61,440: -323/-186/-173,
    # the old budget, which seed 0 now misses; at 41k -331/-586/-627; random policy ~ -1200).
    # Threshold -300 leaves margin for other platforms without passing an unlearned policy.
    s = train_summary(["algo=trpo", "env=pendulum", "total_steps=81920", "seed=0", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= -300
