"""stop.reward_threshold and stop.patience end a run on its periodic deterministic evals (summary: stopped_by)."""
import json

import pytest

from rlx.app.validate import validate
from rlx.config.compose import compose_config
from rlx.errors import UserError
from rlx.train.driver import train
from rlx.train.session import EVAL_HOOKS
from tests.conftest import FAST

# PPO CartPole (RL-Zoo preset, 8 envs x 32 steps): evals every 512 steps, far below total_steps
RUN = ["total_steps=20480", "eval.every=512", "eval.episodes=2", "checkpoint.every=0", "logger.wandb.mode=disabled",
       "logger.tensorboard=false", *FAST]


def _evals(run_dir):
    return [json.loads(line)["eval_return_mean"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "eval_return_mean" in line]


def test_reward_threshold_stops_at_the_first_eval_that_reaches_it(tmp_path):
    summary = train(compose_config([*RUN, "stop.reward_threshold=30"]), tmp_path / "run")
    evals = _evals(tmp_path / "run")
    assert summary["status"] == "ok" and summary["stopped_by"] == "reward_threshold"
    assert summary["env_steps"] < 20480 and summary["env_steps"] % 512 == 0
    assert evals[-1] >= 30 and all(v < 30 for v in evals[:-1])  # no final eval after the stop: the last is it
    assert summary["eval_return_mean"] == evals[-1]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_by"] == "reward_threshold"


def test_patience_stops_after_that_many_evals_without_a_new_best(tmp_path):
    summary = train(compose_config([*RUN, "stop.patience=2", "algo.lr=1e-9"]), tmp_path / "run")  # lr ~0: no progress
    evals = _evals(tmp_path / "run")
    assert summary["status"] == "ok" and summary["stopped_by"] == "patience"
    best_at = max(range(len(evals)), key=lambda i: (evals[i], -i))  # the first eval that reached the best value
    assert len(evals) - 1 - best_at == 2  # stopped at the 2nd eval after the last new best
    assert summary["best_eval_return"] == max(evals)


def test_an_eval_hook_sees_every_periodic_eval_and_can_stop_the_run(tmp_path):
    seen = []

    def hook(env_steps, value):
        seen.append((env_steps, value))
        return "pruned" if len(seen) == 3 else None

    token = EVAL_HOOKS.set((hook,))
    try:
        summary = train(compose_config(RUN), tmp_path / "run")
    finally:
        EVAL_HOOKS.reset(token)
    assert summary["status"] == "pruned" and summary["stopped_by"] == "pruned" and summary["env_steps"] == 1536
    assert seen == list(zip([512, 1024, 1536], _evals(tmp_path / "run"), strict=False))


@pytest.mark.parametrize("override, fragment", [("stop.patience=-1", "stop.patience=-1: out of range"),
                                                ("stop.reward_threshold=abc", "stop.reward_threshold='abc'"),
                                                ("stop.patiense=3", "stop.patiense")])
def test_bad_stop_values_are_one_line_errors(override, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        validate([override])
