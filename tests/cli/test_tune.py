"""`rlx tune` end to end: 6 short trials, the median pruner, a resume from the study's SQLite storage with 2
parallel jobs, confirmation over fresh seeds, best.yaml usable as a preset; a trial stopped by SIGTERM that
the resumed study continues from its checkpoint; multi-seed trials and the Wilcoxon pruner; Optuna >= 4 without
its experimental warnings; and bad input that fails fast."""
import fcntl
import json
import os
import warnings

import pytest
import yaml

from rlx.errors import UserError
from tests.conftest import run_cli, run_cli_until

optuna = pytest.importorskip("optuna")
from rlx.app.tune import Dimension, parse_space, plan_study  # noqa: E402

# PPO CartPole (RL-Zoo preset), 1024 steps, a periodic eval at 512 (the pruner sees it). The space holds clearly bad trials:
# env.max_episode_steps=10 caps every episode (training and eval) at 10 steps.
RUN = ["algo=ppo", "total_steps=1024", "eval.every=512", "eval.episodes=2", "checkpoint.every=0",
       "logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false",
       "env.max_episode_steps=choice(500,10)", "algo.clip_eps=interval(0.1,0.3)"]
TUNE = ["tune.sampler=random", "tune.startup_trials=2", "tune.warmup_evals=0", "tune.top_k=2"]


def _build_study(cwd):
    d = cwd / "study"
    first = run_cli("tune", *RUN, *TUNE, "tune.trials=4", "tune.confirm_seeds=0", f"hydra.sweep.dir={d}", cwd=cwd)
    assert first.returncode == 0, first.stderr
    states_before = _states(d)
    resumed = run_cli("tune", "--resume", str(d), "tune.trials=6", "tune.n_jobs=2", "tune.confirm_seeds=2", cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr
    return {"first": first.stderr, "resumed": resumed.stderr, "before": states_before}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Built once per test session: under xdist the first worker builds it in the session's shared temp dir
    while another waits on a lock, instead of both training the same study."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        cwd = tmp_path_factory.mktemp("tune")
        out = _build_study(cwd)
    else:
        cwd = tmp_path_factory.getbasetemp().parent / "tune-study"
        with open(tmp_path_factory.getbasetemp().parent / "tune-study.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = cwd / "built.json"
            if not done.is_file():
                cwd.mkdir(exist_ok=True)
                out = _build_study(cwd)
                done.write_text(json.dumps(out))
            out = json.loads(done.read_text())
    before = {int(k): v for k, v in out["before"].items()}
    return cwd / "study", out["first"], out["resumed"], before


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
    assert "pruned" in first  # each trial is reported on one line


def test_resume_continues_the_same_study_from_its_storage(study):
    d, _, resumed, before = study
    after = _states(d)
    assert len(before) == 4 and len(after) == 6
    assert {n: after[n] for n in before} == before  # the first 4 trials are kept, not re-run
    assert sorted(int(p.name) for p in (d / "trials").iterdir()) == list(range(6))
    assert "resuming" in resumed


def test_optuna_of_today_without_its_experimental_warnings(study):
    """CI runs rlx tune on Optuna >= 4; the experimental features rlx uses on purpose (heartbeats,
    fail_stale_trials on --resume) do not warn its users."""
    _, first, resumed, _ = study
    assert int(optuna.__version__.split(".")[0]) >= 4
    assert "ExperimentalWarning" not in first + resumed and "experimental" not in first + resumed


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
    # Hydra's grammar takes any tag name: rlx tune names the unknown one and the known ones
    (["algo.lr=tag(foo,interval(1e-4,1e-3))"], "'algo.lr=tag(foo,interval(1e-4,1e-3))': unknown tag 'foo'; rlx tune knows "
                                                "tag(log, interval(a,b)) (log-uniform) and tag(int, interval(a,b)) (integers)"),
    (["algo.lr=tag(log,foo,interval(1e-4,1e-3))"], "unknown tag 'foo'"),
    (["algo.n_epochs=tag(log,choice(5,10))"], "tag(log) applies to interval() only"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.pruner=wilcoxon"], "give tune.trial_seeds >= 2"),
    (["algo.clip_eps=interval(0.1,0.3)", "tune.trial_seeds=3"], "tune.pruner=median prunes a one-seed trial"),
])
def test_bad_input_is_one_line_before_any_trial(args, fragment, tmp_path):
    import re

    with pytest.raises(UserError, match=re.escape(fragment)):
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


@pytest.mark.parametrize("pruner, prunes", [("median", True), ("hyperband", True), ("wilcoxon", True), ("none", False)])
def test_each_pruner_acts_on_reported_evals(pruner, prunes, tmp_path):
    from optuna.exceptions import ExperimentalWarning

    from rlx.app.tune import Plan, TuneConfig, _make_study

    seeds = 2 if pruner == "wilcoxon" else 1  # wilcoxon: steps are seeds (paired with the best trial's)
    plan = Plan([], [Dimension("x", "float", 0.0, 1.0)], TuneConfig(pruner=pruner, startup_trials=2, warmup_evals=0,
                                                                     trial_seeds=seeds), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentalWarning)  # rlx's own choices do not warn
        study = _make_study(plan)

    def objective(trial):  # low x: a low curve, which a pruner should stop
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 9 if pruner == "wilcoxon" else 5):  # wilcoxon: p < 0.1 needs a few paired steps
            trial.report(x * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x * step

    study.optimize(objective, n_trials=12)
    states = [t.state.name for t in study.trials]
    assert ("PRUNED" in states) == prunes, states
    assert (tmp_path / "study.db").is_file()  # SQLite in the study dir by default


# ------------------------------------------------------------------ a stopped trial, multi-seed trials, Optuna's version

FAST = ["algo=ppo", "eval.episodes=2", "checkpoint.every=0", "logger.wandb.mode=disabled", "logger.tensorboard=false",
        "logger.progress=false", "algo.clip_eps=interval(0.1,0.3)", "tune.sampler=random"]


def test_a_stopped_trial_continues_from_its_checkpoint_when_the_study_resumes(tmp_path):
    """SIGTERM mid-trial: the run checkpoints, Optuna ends the trial's record, the messages name `rlx tune --resume`
    and exit 143; --resume queues a trial with the same params that takes over the run dir, reports the evals again
    and continues the run from its checkpoint to total_steps; the stopped trial is not counted twice."""
    d = tmp_path / "s"
    p = run_cli_until(d / "trials" / "0" / "metrics.jsonl", "eval_return_mean", "tune", *FAST, "total_steps=8192",
                      "eval.every=512", "tune.trials=1", "tune.confirm_seeds=0", f"hydra.sweep.dir={d}", cwd=tmp_path)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"rlx tune: stopped by SIGTERM; continue the study with: rlx tune --resume {d} "
                                            "(a stopped trial continues from its checkpoint)")
    assert "rlx tune: trial 0: stopped by SIGTERM at env step" in err and f"`rlx tune --resume {d}` continues this trial" in err
    (stopped,) = _study(d).trials
    assert stopped.state.name == "FAIL" and stopped.user_attrs["stopped"] == "SIGTERM" and stopped.intermediate_values
    at = json.loads((d / "trials" / "0" / "summary.json").read_text())["env_steps"]
    assert at < 8192 and (d / "trials" / "0" / "checkpoints" / "last.pt").is_file()

    r = run_cli("tune", "--resume", str(d), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the study already holds 1 trial (tune.trials=1): no new trial; trial 0 (stopped by SIGTERM) continues as trial 1 " \
           "from its checkpoint" in r.stderr
    assert f"from env step {at:,}" in r.stderr  # the run resumed, not restarted
    old, new = _study(d).trials
    assert new.state.name == "COMPLETE" and new.user_attrs["continues"] == 0 and new.params == old.params
    assert {k: new.intermediate_values[k] for k in old.intermediate_values} == old.intermediate_values
    assert len(new.intermediate_values) > len(old.intermediate_values)
    assert sorted(p.name for p in (d / "trials").iterdir()) == ["1"]  # the run dir moved with the trial
    summary = json.loads((d / "trials" / "1" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["env_steps"] >= 8192
    text = (d / "tune.md").read_text()
    assert "1 trial (1 complete)" in text and "| 0 | stopped (SIGTERM; continued as trial 1) |" in text
    assert "| 1 | complete (continues trial 0) |" in text


def test_multi_seed_trials_and_a_resume_with_fewer_trials_than_exist(tmp_path):
    d = tmp_path / "s"
    r = run_cli("tune", *FAST, "total_steps=512", "eval.every=0", "tune.trials=2", "tune.trial_seeds=2",
                "tune.pruner=wilcoxon", "tune.confirm_seeds=0", f"hydra.sweep.dir={d}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for t in _study(d).trials:
        runs = sorted((d / "trials" / str(t.number)).iterdir())
        assert [x.name for x in runs] == ["seed0", "seed1"]  # seed, seed+1: the fixed overrides' seed (0) onwards
        returns = [json.loads((x / "summary.json").read_text())["eval_return_mean"] for x in runs]
        assert t.value == pytest.approx(sum(returns) / 2) and t.intermediate_values == {1: returns[0], 2: returns[1]}
        assert yaml.safe_load((runs[1] / ".hydra" / "overrides.yaml").read_text())[-1] == "seed=1"
    assert "objective: mean final deterministic eval return over seeds 0..1; pruner: wilcoxon" in (d / "tune.md").read_text()
    r = run_cli("tune", "--resume", str(d), "tune.trials=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming {d}: the study already holds 2 trials (tune.trials=1): no new trial; give tune.trials above 2 " \
           "for more" in r.stderr
    assert len(_study(d).trials) == 2


def test_the_wilcoxon_pruner_stops_a_multi_seed_trial_between_its_seeds(tmp_path, monkeypatch):
    """A trial is tune.trial_seeds runs; each run's final return is reported at step = seed number, so the Wilcoxon
    pruner pairs it with the best trial's run on the same seed, and a clearly worse trial stops before its last seed."""
    import rlx.app.tune as tune

    runs = []

    def fake_run(overrides, run_dir, shown, hook=None):  # x=... sets the return; seed adds a little noise
        x = float(next(o for o in overrides if o.startswith("x=")).partition("=")[2])
        seed = int(next(o for o in overrides if o.startswith("seed=")).partition("=")[2])
        runs.append((x, seed))
        return {"status": "ok", "eval_return_mean": 100 * x + seed, "env_steps": 1}

    monkeypatch.setattr(tune, "_start_or_continue", fake_run)
    plan = tune.Plan([], [tune.Dimension("x", "categorical", choices=["1.0", "0.1"])],
                     tune.TuneConfig(pruner="wilcoxon", trial_seeds=6, warmup_evals=0), tmp_path)
    study = tune._make_study(plan)
    study.enqueue_trial({"x": "1.0"})
    study.enqueue_trial({"x": "0.1"})
    study.optimize(tune._objective(plan), n_trials=2)
    good, bad = study.trials
    assert good.state.name == "COMPLETE" and good.value == pytest.approx(100 + 2.5)  # mean over seeds 0..5
    assert bad.state.name == "PRUNED" and len(bad.intermediate_values) < 6
    assert [s for x, s in runs if x == 0.1] == list(range(len(bad.intermediate_values)))  # the seeds after it never ran


def test_resume_message_counts_what_the_study_holds(tmp_path):
    from rlx.app.tune import Plan, TuneConfig, _make_study, _resume_message

    plan = Plan([], [Dimension("x", "float", 0.0, 1.0)], TuneConfig(trials=3, pruner="none"), tmp_path)
    study = _make_study(plan)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=5)
    assert _resume_message(plan, study, []) == (f"resuming {tmp_path}: the study already holds 5 trials (tune.trials=3): "
                                                "no new trial; give tune.trials above 5 for more")
    plan.tune.trials = 7
    assert _resume_message(plan, study, []) == f"resuming {tmp_path}: 5 of 7 trials exist, 2 to run"


def test_an_old_optuna_is_one_line_naming_both_versions(monkeypatch):
    """hydra-optuna-sweeper (rlx[optuna]) pins optuna<3; rlx tune on it was a bare AssertionError with SQLAlchemy 2."""
    from rlx.app.tune import _require_optuna

    monkeypatch.setattr(optuna, "__version__", "2.10.1")
    with pytest.raises(UserError, match=r"rlx tune needs Optuna >= 4.0, found Optuna 2\.10\.1, SQLAlchemy [0-9.]+ .*"
                                         r"pip install 'rlx\[tune\]'"):
        _require_optuna()
