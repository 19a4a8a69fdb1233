"""Off-policy learning tests (slow): the tuned presets (RL-Zoo's where published) through the CLI path.

Budgets: seeds 0, 1, 2 were trained with an evaluation every 2k (Pendulum) / 10k (CartPole) env steps;
each test stops at a budget (within the issue's: 20k steps on Pendulum, 100k on CartPole) where all three
seeds had converged and passed by a wide margin; the measured numbers are next to each test. Periodic
evaluation does not change training (it uses its own envs and a forked RNG), so those evals are exactly
what a run with that budget ends with. Only ``total_steps`` (and, for the MuJoCo smoke test,
learning_starts) is overridden: every hyperparameter is the shipped default, like-for-like with SB3.
"""
import pytest

from tests.learning.helpers import train_summary

# (algo, env steps, threshold): Pendulum-v1 (random policy ~ -1200..-1400, good ~ -150), deterministic
# eval over 10 episodes after training. Measured final evals at these budgets, seeds 0/1/2, and the
# tested seed 0's wall time on the (busy, 2-core) dev box:
#   sac           10k: -110.2 / -131.8 / -119.5    (~75 s; converged from 6-8k; 20k: -112 / -133 / -118)
#   td3           16k: -116.5 / -139.4 / -127.7    (~70 s; the zoo's 10k random steps, then learning;
#                                                   14k: -273 / -176 / -177)
#   ddpg          16k: -109.7 / -133.3 / -121.2    (~50 s; 12k: -220 / -222 / -213)
#   sac_v         10k: -111.4 / -132.9 / -119.5    (~85 s; converged from 8k, one -636 dip at 6k)
#   offpolicy_ac  12k: -110.4 / -134.8 / -122.9    (~110 s; converged from 10k; it dips now and then:
#                                                   worst eval after 10k was -274, so the threshold is -400)
# SAC itself: tests/learning/test_learning_population.py's SAC population, whose member (alpha auto, tau 0.005)
# is the plain SAC run (a member is a run, issue 22) at 8k steps, with three more members (536 s in one CI run
# where this 10k-step SAC test took 200 s).
PENDULUM = [
    ("td3", 16000, -250),
    ("ddpg", 16000, -250),
    ("sac_v", 10000, -300),
    ("offpolicy_ac", 12000, -400),
]


@pytest.mark.slow
@pytest.mark.parametrize("algo,steps,threshold", PENDULUM, ids=[p[0] for p in PENDULUM])
def test_learns_pendulum(algo, steps, threshold, tmp_path):
    s = train_summary([f"algo={algo}", "env=pendulum", f"total_steps={steps}", "seed=0", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= threshold


@pytest.mark.slow
def test_sac_discrete_cartpole(tmp_path):
    # tuned/sac_discrete_cartpole (rlx's own preset: no RL-Zoo one exists). measured at 100k: seeds
    # 0/1/2 -> 500 / 461 / 500 (~135 s). Evals every 10k after 40k stay >= 445 except two dips
    # (209 at 80k on seed 0, 302 at 50k on seed 1), so no shorter budget passes on all three seeds.
    s = train_summary(["algo=sac_discrete", "env=cartpole", "total_steps=100000", "seed=0", "eval.every=0"], tmp_path)
    assert s["eval_return_mean"] >= 400


@pytest.mark.slow
def test_sac_halfcheetah_smoke(tmp_path):
    """A few thousand MuJoCo steps: the 17-d observation / 6-d action path runs and stays finite."""
    pytest.importorskip("mujoco")
    # learning_starts lowered from the preset's 10k so that this short run trains at all (1000 updates)
    s = train_summary(["algo=sac", "env=halfcheetah", "total_steps=2000", "algo.learning_starts=1000",
                       "eval.episodes=1", "eval.every=0"], tmp_path)
    assert s["status"] == "ok" and s["updates"] == 1000 and s["eval_return_mean"] > -1000
