"""Population learning tests (slow, issue 12): every member of one batched process learns as its plain run would."""
from __future__ import annotations

import pytest

from rlx.compose import compose_config
from rlx.population import train_population
from tests.learning.helpers import QUIET


def population_summaries(members: list[list[str]], tmp_path) -> list[dict]:
    cfgs = [compose_config([*m, *QUIET, "logger.tensorboard=false"]) for m in members]
    return train_population(cfgs, [tmp_path / f"m{i}" for i in range(len(members))])


@pytest.mark.slow
def test_ppo_cartpole_population_of_4_every_member_solves_within_100k(tmp_path):
    # eps 0.1/0.3 x seeds 0/1 in ONE process (RL-Zoo preset, 8 envs per member: 32 envs in one batched
    # CartPole). Measured final deterministic evals, seeds (0,1) / (2,3) / (4,5): see README "Populations".
    members = [["algo=ppo", "env=cartpole", "total_steps=100000", f"seed={seed}", f"algo.clip_eps={eps}", "eval.every=0"]
               for seed in (0, 1) for eps in (0.1, 0.3)]
    summaries = population_summaries(members, tmp_path)
    returns = [s["eval_return_mean"] for s in summaries]
    assert all(s["status"] == "ok" and s["env_steps"] == 100_000 for s in summaries), summaries
    assert min(returns) >= 475, returns
