"""`rlx tune tune.population=K`: Optuna trials asked K at once and trained as one population. A trial's member is
its run: the same params give the same metrics as the trial run alone (tune.population=1); a pruned trial's member
is masked at its eval while the others train on; a SIGTERM stops the whole population at a checkpoint and
--resume continues every stopped trial from it; keys that cannot vary within a population are refused up front."""
import json
import re

import pytest

from rlx.errors import UserError
from tests.conftest import run_cli, run_cli_until

optuna = pytest.importorskip("optuna")
from rlx.app import tune as tune_module  # noqa: E402

RUN = ["algo=ppo", "total_steps=1024", "eval.every=512", "eval.episodes=2", "checkpoint.every=0",
       "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false",
       "algo.lr=tag(log,interval(1e-4,1e-2))", "algo.clip_eps=interval(0.1,0.3)"]
TUNE = ["tune.sampler=random", "tune.pruner=none", "tune.confirm_seeds=0", "tune.trials=3"]
NOT_COMPARED = ("wall_s", "sps")  # timing
# What the member's envs saw and its evals: exactly its run alone. Its losses: equal up to float rounding (one
# batched matmul over the members sums in another order than the run's own), and clip_fraction, which counts
# probability ratios beyond 1 +- eps, may count a few samples that sit on that edge differently.
EXACT = ("env_steps", "updates", "episodes", "episode_return_mean", "episode_return_std", "episode_length_mean",
         "eval_return_mean", "eval_return_std", "lr", "clip_eps")


def _study(d):
    return optuna.load_study(study_name=d.name, storage=f"sqlite:///{d / 'study.db'}")


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in NOT_COMPARED} for r in rows]


def _assert_same_run(member, alone):
    assert len(member) == len(alone) > 0
    for m, a in zip(member, alone, strict=True):
        assert m.keys() == a.keys()
        assert {k: m[k] for k in EXACT if k in m} == {k: a[k] for k in EXACT if k in a}
        for k in m.keys() - set(EXACT):
            tol = 0.02 if k == "clip_fraction" else 1e-5
            assert m[k] == pytest.approx(a[k], rel=1e-4, abs=tol), k


def test_population_trials_are_the_trials_run_alone_and_a_pruned_member_is_masked(tmp_path, monkeypatch):
    alone, together = tmp_path / "alone", tmp_path / "together"
    assert tune_module.run_tune([*RUN, *TUNE, f"hydra.sweep.dir={alone}"]) == 0

    def prune_trial_1(trial, reported):  # the pruner's decision, forced for one trial: what masking does with it
        hook = original(trial, reported)
        return (lambda steps, value: hook(steps, value) or "pruned") if trial.number == 1 else hook

    original = tune_module._pruning_hook
    monkeypatch.setattr(tune_module, "_pruning_hook", prune_trial_1)
    assert tune_module.run_tune([*RUN, *TUNE, "tune.population=3", f"hydra.sweep.dir={together}"]) == 0

    seq, pop = _study(alone).trials, _study(together).trials
    assert [t.params for t in pop] == [t.params for t in seq]  # the random sampler draws the same params either way
    assert [t.state.name for t in pop] == ["COMPLETE", "PRUNED", "COMPLETE"]
    for n in (0, 2):  # members trained with a masked fellow member: their runs alone
        _assert_same_run(_metrics(together / "trials" / str(n)), _metrics(alone / "trials" / str(n)))
        assert pop[n].value == seq[n].value and pop[n].intermediate_values == seq[n].intermediate_values
    pruned = json.loads((together / "trials" / "1" / "summary.json").read_text())
    assert pruned["status"] == "pruned" and pruned["env_steps"] == 512  # stopped at its first eval
    assert pop[1].intermediate_values == {1: seq[1].intermediate_values[1]}
    evals = [r for r in _metrics(together / "trials" / "1") if "eval_return_mean" in r]  # up to its pruning: its run alone
    assert evals == [r for r in _metrics(alone / "trials" / "1") if "eval_return_mean" in r and r["env_steps"] <= 512]
    text = (together / "tune.md").read_text()
    assert "3 trials (2 complete, 1 pruned)" in text


def test_a_stopped_population_continues_every_trial_from_its_checkpoint(tmp_path):
    d = tmp_path / "s"
    p = run_cli_until(d / "trials" / "1" / "metrics.jsonl", "eval_return_mean", "tune", *RUN[:-2],
                      "algo.clip_eps=interval(0.1,0.3)", "total_steps=8192", "tune.sampler=random", "tune.trials=2",
                      "tune.population=2", "tune.confirm_seeds=0", f"hydra.sweep.dir={d}", cwd=tmp_path)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 143, err
    assert f"trial(s) 0, 1: stopped by SIGTERM, checkpoints saved; `rlx tune --resume {d}` continues them" in err
    stopped = _study(d).trials
    assert [(t.state.name, t.user_attrs.get("stopped")) for t in stopped] == [("FAIL", "SIGTERM")] * 2
    at = [json.loads((d / "trials" / str(n) / "summary.json").read_text())["env_steps"] for n in (0, 1)]
    assert at[0] == at[1] < 8192

    r = run_cli("tune", "--resume", str(d), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "population of 2: trial(s) 2, 3" in r.stderr and f"from env step {at[0]:,}" in r.stderr
    old0, old1, new0, new1 = _study(d).trials
    for old, new in ((old0, new0), (old1, new1)):
        assert new.state.name == "COMPLETE" and new.user_attrs["continues"] == old.number and new.params == old.params
        assert {k: new.intermediate_values[k] for k in old.intermediate_values} == old.intermediate_values
        summary = json.loads((d / "trials" / str(new.number) / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["env_steps"] >= 8192
    assert sorted(p.name for p in (d / "trials").iterdir()) == ["2", "3"]  # the run dirs moved with their trials


@pytest.mark.parametrize("args, fragment", [
    (["algo.n_epochs=5,10", "tune.population=2"], "tune.population=2: algo.n_epochs cannot differ within one population "
                                                  "of ppo; keys that can: algo.lr, "),
    (["algo=a3c", "algo.lr=interval(1e-4,1e-3)", "tune.population=2"], "algo=a3c has no member dimension"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.population=2", "tune.trial_seeds=2", "tune.pruner=wilcoxon"],
     "tune.population=2 trains each trial as one member (one seed); with tune.trial_seeds=2 use tune.population=1"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.population=0"], "tune.population"),
])
def test_bad_population_settings_are_one_line_before_any_trial(args, fragment, tmp_path):
    with pytest.raises(UserError, match=re.escape(fragment)):
        tune_module.plan_study([*args, f"hydra.sweep.dir={tmp_path / 's'}"])
    assert not (tmp_path / "s").exists()


def test_a_study_resumed_as_a_population_must_search_member_keys(tmp_path):
    from rlx.app.tune import Dimension, Plan, TuneConfig

    plan = Plan(["algo=ppo"], [Dimension("algo.n_epochs", "categorical", choices=["5", "10"])], TuneConfig(), tmp_path)
    plan.save()
    assert Plan.load(tmp_path, {"trials": 30}).tune.trials == 30
    with pytest.raises(UserError, match=re.escape("tune.population=4: algo.n_epochs cannot differ within one population")):
        Plan.load(tmp_path, {"population": 4})
