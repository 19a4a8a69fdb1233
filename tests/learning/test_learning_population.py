"""Population learning tests (slow, issue 12): every member of one batched process learns as its plain run would."""
from __future__ import annotations

import pytest

from rlx.config.compose import compose_config
from rlx.train.driver import train_job as train_population
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
    # 391 whole rollouts of 32 steps x 8 envs: total_steps rounds up to whole rollouts, as in a plain run
    assert all(s["status"] == "ok" and s["env_steps"] == 100_096 for s in summaries), summaries
    assert min(returns) >= 475, returns


def sac_pendulum_population(tmp_path, seed: int, steps: int = 8_000) -> list[dict]:
    """alpha auto/0.1 x tau 0.005/0.02, one seed, RL-Zoo's tuned SAC (lr 1e-3): 4 members, one process."""
    members = [["algo=sac", "env=pendulum", f"total_steps={steps}", f"seed={seed}", f"algo.alpha={alpha}",
                f"algo.tau={tau}", "eval.every=2000"] for alpha in ("auto", 0.1) for tau in (0.005, 0.02)]
    return population_summaries(members, tmp_path)


@pytest.mark.slow
def test_sac_pendulum_population_of_4_every_member_reaches_minus_250(tmp_path):
    # Every member's best periodic deterministic eval (every 2k steps) >= -250 within 8k steps per member
    # (the issue allows 20k; plain SAC converges from 6-8k). Measured best evals, members (auto, 0.005)
    # (auto, 0.02) (0.1, 0.005) (0.1, 0.02): seed 0 (stopped at 6.2k) -110 / -109 / -112 / -109; seed 1
    # -131 / -131 / -134 / -144; seed 2 -122 / -121 / -124 / -121 (member 0: -125 at 4k, a -837 dip at 6k: hence the
    # best eval). Wall time ~8-9 min per seed on the busy 2-core dev box (4 x 256x256 SAC updates per step
    # are compute-bound on CPU): over the 4 min CI wish; on a GPU far less.
    summaries = sac_pendulum_population(tmp_path, seed=0)
    best = [s["best_eval_return"] for s in summaries]
    assert all(s["status"] == "ok" and s["env_steps"] == 8_000 for s in summaries), summaries
    assert min(best) >= -250, best
