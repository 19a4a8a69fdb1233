"""PBT learning test (slow, issue 25): a grid with bad values, with and without population-based training."""
from __future__ import annotations

import numpy as np
import pytest

from rlx.config.compose import compose_config
from rlx.train.driver import train_job
from tests.learning.helpers import QUIET

LRS = np.logspace(-5, -2, 8)  # RL-Zoo's PPO CartPole preset has lr 1e-3: the low end barely learns in 50k steps


def _population(tmp_path, pbt: bool) -> list[float]:
    cfgs = [compose_config(["algo=ppo", "env=cartpole", "total_steps=50000", f"seed={k}", f"algo.lr={lr:.3g}",
                            "eval.every=5000", "eval.episodes=5", *QUIET, "logger.tensorboard=false",
                            *(["pbt.enabled=true", "pbt.interval=10000"] if pbt else [])]) for k, lr in enumerate(LRS)]
    summaries = train_job(cfgs, [tmp_path / ("pbt" if pbt else "grid") / f"m{k}" for k in range(len(LRS))])
    assert all(s["status"] == "ok" for s in summaries), summaries
    return [s["eval_return_mean"] for s in summaries]


@pytest.mark.slow
def test_pbt_lifts_the_median_member_of_a_grid_with_bad_learning_rates(tmp_path):
    # 8 members, lr log-spaced 1e-5..1e-2, 50k steps each, 4 rounds (every 10k, bottom 2 copy the top 2).
    # Measured median final evals (members seeded base..base+7), PBT vs the same grid without it:
    # base 0: 500 vs 435.1, base 100: 500 vs 197.6, base 200: 500 vs 203.3 (README "Population-based training").
    with_pbt, grid = _population(tmp_path, True), _population(tmp_path, False)
    assert np.median(with_pbt) >= 475 and np.median(with_pbt) > np.median(grid), (with_pbt, grid)
