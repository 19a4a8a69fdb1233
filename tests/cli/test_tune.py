"""`rlx tune` end to end: 6 short trials, the median pruner, a resume from the study's SQLite storage with 2
parallel jobs, confirmation over fresh seeds, best.yaml usable as a preset; and bad input that fails fast."""
import json

import pytest
import yaml

from rlx.errors import UserError
from tests.conftest import run_cli

optuna = pytest.importorskip("optuna")
from rlx.app.tune import Dimension, parse_space, plan_study  # noqa: E402

# PPO CartPole (RL-Zoo preset), 1024 steps, a periodic eval at 512 (the pruner sees it). The space holds clearly bad trials:
# env.max_episode_steps=10 caps every episode (training and eval) at 10 steps.
RUN = ["algo=ppo", "total_steps=1024", "eval.every=512", "eval.episodes=2", "checkpoint.every=0",
       "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false",
       "env.max_episode_steps=choice(500,10)", "algo.clip_eps=interval(0.1,0.3)"]
TUNE = ["tune.sampler=random", "tune.startup_trials=2", "tune.warmup_evals=0", "tune.top_k=2"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tune")
    d = cwd / "study"
    first = run_cli("tune", *RUN, *TUNE, "tune.trials=4", "tune.confirm_seeds=0", f"hydra.sweep.dir={d}", cwd=cwd)
    assert first.returncode == 0, first.stderr
    states_before = _states(d)
    resumed = run_cli("tune", "--resume", str(d), "tune.trials=6", "tune.n_jobs=2", "tune.confirm_seeds=2", cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr
    return d, first, resumed, states_before


def _study(d):
    return optuna.load_study(study_name=d.name, storage=f"sqlite:///{d / 'study.db'}")


def _states(d):
    return {t.number: t.state.name for t in _study(d).trials}


def test_median_pruner_prunes_the_bad_trials_and_keeps_their_curves(study):
    d, first, _, _ = study
    trials = _study(d).trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, [(t.number, t.state.name, t.params) for t in trials]
    # the built-in bad value is pruned; a 500-step trial may be too when its early eval is below the median
    # (at 512 steps an untrained CartPole policy's deterministic return is itself ~10: the pruner's rule, not a bug)
    assert any(t.params["env.max_episode_steps"] == "10" for t in pruned), [(t.params, t.intermediate_values) for t in pruned]
    for t in pruned:
        run = d / "trials" / str(t.number)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "pruned" and summary["stopped_by"] == "pruned" and summary["env_steps"] < 1024
        evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "eval_return_mean" in line]
        assert [e["env_steps"] for e in evals] == [512 * (i + 1) for i in range(len(t.intermediate_values))]
        assert [e["eval_return_mean"] for e in evals] == [t.intermediate_values[i + 1] for i in range(len(evals))]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert any(t.params["env.max_episode_steps"] == "500" for t in complete)
    assert "pruned" in first.stderr  # each trial is reported on one line


def test_resume_continues_the_same_study_from_its_storage(study):
    d, _, resumed, before = study
    after = _states(d)
    assert len(before) == 4 and len(after) == 6
    assert {n: after[n] for n in before} == before  # the first 4 trials are kept, not re-run
    assert sorted(int(p.name) for p in (d / "trials").iterdir()) == list(range(6))
    assert "resuming" in resumed.stderr


def test_confirmation_and_best_yaml(study, tmp_path):
    d, _, resumed, _ = study
    top = sorted((t for t in _study(d).trials if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number))[:2]
    confirm = sorted(p.name for p in (d / "confirm").iterdir() if p.is_dir())
    assert confirm == sorted(f"trial{t.number}-seed{s}" for t in top for s in (1, 2))  # fresh seeds, not the search seed 0
    assert all(json.loads((d / "confirm" / c / "summary.json").read_text())["status"] == "ok" for c in confirm)
    assert (d / "confirm" / "report.md").is_file()
    best = yaml.safe_load((d / "best.yaml").read_text())
    assert best["env"]["max_episode_steps"] == 500 and 0.1 <= best["algo"]["clip_eps"] <= 0.3
    assert (d / "best.yaml").read_text().startswith("# @package _global_")
    text = (d / "tune.md").read_text()
    assert "Confirmation over 2 fresh seeds" in text and "P(best > runner-up)" in text or "no runner-up" in text
    # usable as a preset
    r = run_cli("train", "--config-dir", str(d), "+preset=best", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    job = yaml.safe_load(r.stdout)
    assert job["algo"]["clip_eps"] == best["algo"]["clip_eps"] and job["env"]["max_episode_steps"] == 500


def test_parse_space_maps_hydra_sweeps_to_optuna_distributions():
    fixed, space = parse_space(["algo=ppo", "algo.lr=tag(log,interval(1e-4,3e-3))", "algo.n_epochs=interval(5,20)",
                                "algo.batch_size=64,128", "network.hidden_sizes=choice([64,64],[32])"])
    assert fixed == ["algo=ppo"]
    assert space == [Dimension("algo.lr", "float", 1e-4, 3e-3, log=True),
                     Dimension("algo.n_epochs", "int", 5, 20),  # an int key: an int range
                     Dimension("algo.batch_size", "categorical", choices=["64", "128"]),
                     Dimension("network.hidden_sizes", "categorical", choices=["[64,64]", "[32]"])]


@pytest.mark.parametrize("args, fragment", [
    (["algo.lr=interval(-1,0.1)"], "algo.lr=-1.0: out of range"),  # an interval end is validated
    (["algo.clip_eps=0.1,-1"], "algo.clip_eps=-1: out of range"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.pruner=foo"], "tune.pruner='foo'"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.trails=3"], "unknown key 'tune.trails': did you mean 'tune.trials'"),
    (["algo=ppo"], "no search space"),
    (["algo.clip_eps=interval(0.1,0.3)", "seed=0,1"], "seed is not a hyperparameter"),
    (["algo.lr=tag(log,interval(0,0.1))"], "log interval needs a start > 0"),
    (["algo.n_epochs=interval(1.5,4)"], "takes integers"),
])
def test_bad_input_is_one_line_before_any_trial(args, fragment, tmp_path):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        plan_study([*args, f"hydra.sweep.dir={tmp_path / 's'}"])
    assert not (tmp_path / "s").exists()


def test_bad_input_exit_code_through_the_cli(tmp_path):
    r = run_cli("tune", "algo.clip_eps=interval(-0.1,0.3)", f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("rlx: error: algo.clip_eps=-0.1") and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_resume_needs_a_study_dir_and_keeps_the_search_space(study, tmp_path):
    from rlx.app.tune import Plan

    with pytest.raises(UserError, match="not an rlx tune study dir"):
        Plan.load(tmp_path, {})
    d = study[0]
    with pytest.raises(UserError, match="tune.sampler cannot change on --resume"):
        Plan.load(d, {"sampler": "tpe"})
    assert [x.key for x in Plan.load(d, {"trials": 9}).space] == ["env.max_episode_steps", "algo.clip_eps"]


@pytest.mark.parametrize("pruner, prunes", [("median", True), ("hyperband", True), ("none", False)])
def test_each_pruner_acts_on_reported_evals(pruner, prunes, tmp_path):
    from rlx.app.tune import Plan, TuneConfig, _make_study

    plan = Plan([], [Dimension("x", "float", 0.0, 1.0)], TuneConfig(pruner=pruner, startup_trials=2, warmup_evals=0), tmp_path)
    study = _make_study(plan)

    def objective(trial):  # low x: a low curve, which a pruner should stop
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 5):
            trial.report(x * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x * 4

    study.optimize(objective, n_trials=12)
    states = [t.state.name for t in study.trials]
    assert ("PRUNED" in states) == prunes, states
    assert (tmp_path / "study.db").is_file()  # SQLite in the study dir by default
