"""REINFORCE, batch/online actor-critic, A2C and A3C learning tests (slow), default hyperparameters
(including the conf/tuned/<algo>_cartpole.yaml presets). Seeds 0, 1, 2 were measured when these budgets
were set; each test runs one of them. The final deterministic evaluation (10 episodes) is asserted."""
import pytest

from tests.learning.helpers import train_summary


def final_eval(algo: str, steps: int, seed: int, tmp_path) -> dict:
    return train_summary([f"algo={algo}", "env=cartpole", f"total_steps={steps}", f"seed={seed}", "eval.every=0"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("algo, steps, seed, threshold", [
    # measured: seeds 0/1/2 -> 500/500/500 at 300k (first eval >= 475 at 50-150k), ~15 s each
    pytest.param("reinforce", 300_000, 1, 475, id="reinforce-300k"),
    # measured: seeds 0/1/2 -> 500/500/500 at 200k (first eval >= 475 at 50-75k), ~22 s each
    pytest.param("ac_batch", 200_000, 2, 475, id="ac_batch-200k"),
    # one update per env step (~1k steps/s); measured: seeds 0/1/2 -> 500/500/500 at 40k, ~45 s each
    pytest.param("ac_online", 40_000, 0, 200, id="ac_online-40k"),
    # SB3's defaults, 8 envs; measured: seeds 0/1/2 -> 500/500/500 at 200k, ~13 s each
    pytest.param("a2c", 200_000, 1, 475, id="a2c-200k"),
])
def test_solves_cartpole(algo, steps, seed, threshold, tmp_path):
    assert final_eval(algo, steps, seed, tmp_path)["eval_return_mean"] >= threshold


@pytest.mark.slow
def test_a3c_solves_cartpole_within_300k_with_both_workers(tmp_path):
    # asynchronous, so a seed does not fix the run; measured: seeds 0/1/2 -> 500/500/500 at 300k, ~30 s each
    s = final_eval("a3c", 300_000, 0, tmp_path)
    assert s["eval_return_mean"] >= 475
    assert len(s["worker_updates"]) == 2 and min(s["worker_updates"]) > 0.25 * sum(s["worker_updates"])
