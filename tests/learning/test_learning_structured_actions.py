"""PPO learns a MultiDiscrete task (issue 26): tests/unit/structured_envs.ChooseValues with 4 sub-actions of
4-7 choices (uniform random actions score 1.5 of the best 8 per episode), through `rlx train`'s code path.
Measured when the budget was set: final deterministic evals (20 episodes) 8.0 / 8.0 / 8.0 on seeds 0/1/2."""
from __future__ import annotations

import pytest

from tests.learning.helpers import train_summary

BEST = 8.0  # 8 steps, reward 1 when every sub-action chose its target


@pytest.mark.slow
def test_ppo_learns_to_choose_every_sub_actions_value(tmp_path):
    summary = train_summary(["algo=ppo", "env.id=tests.unit.structured_envs:ChooseValues", "+env.kwargs.nvec=[4,5,6,7]",
                             "env.num_envs=4", "total_steps=49152", "algo.n_steps=128", "algo.batch_size=128",
                             "algo.n_epochs=4", "algo.lr=1e-3", "eval.episodes=20", "seed=0", "torch_threads=1"], tmp_path)
    # >= 7.5: at least 94% of the sub-actions right in the deterministic evaluation (random: 19%)
    assert summary["eval_return_mean"] >= 0.9375 * BEST, summary
