"""`rlx sweep ... hydra/launcher=population` (issue 12): which jobs become one population, in which order,
split by max_members, failed populations recorded per member, bad input before anything runs.

The grouping tests run the real CLI in this process with ``rlx.train.population.train_population`` replaced by a
fake that writes each member's run dir (fast, and independent of the training core); the slow test at the
end trains a real tiny population in a subprocess."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

import rlx.train.driver
from rlx.errors import RunFault
from tests.conftest import FAST, run_cli

POP = ["hydra/launcher=population", "logger.wandb.mode=disabled", *FAST]


def _job_dirs(sweep: Path) -> list[Path]:
    return sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


class FakeCore:
    """Stands in for rlx.train.driver.train_job: records each call, writes config.yaml and an ok
    summary.json into every member's dir (eval_return_mean = 100 * clip_eps + seed), or raises ``fail``
    for a population that contains a member with ``fail_if(cfg)``."""

    def __init__(self, fail: BaseException | None = None, fail_if=lambda cfg: True, status: str = "ok"):
        self.calls: list[tuple[list[dict], list[Path]]] = []
        self.fail, self.fail_if, self.status = fail, fail_if, status

    def __call__(self, cfgs, run_dirs):
        plain = [OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else dict(c) for c in cfgs]
        self.calls.append((plain, [Path(d) for d in run_dirs]))
        if self.fail is not None and any(self.fail_if(c) for c in plain):
            raise self.fail
        summaries = []
        for cfg, run_dir in zip(plain, run_dirs, strict=True):
            summary = {"status": self.status, "algo": cfg["algo"]["name"], "env_id": cfg["env"]["id"], "seed": cfg["seed"],
                       "env_steps": cfg["total_steps"], "eval_return_mean": 100 * cfg["algo"]["clip_eps"] + cfg["seed"]}
            if self.status == "stopped":
                summary["stopped_by"] = "SIGTERM"
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / "config.yaml").write_text(yaml.safe_dump(cfg))
            (Path(run_dir) / "summary.json").write_text(json.dumps(summary))
            summaries.append(summary)
        return summaries


def _sweep(monkeypatch, capsys, tmp_path: Path, *args: str, core: FakeCore | None = None) -> tuple[int, str, str]:
    """`rlx sweep ARGS` in this process (so that the fake core is the one called); (exit code, stdout, stderr)."""
    from rlx.app.cli import main

    if core is not None:
        monkeypatch.setattr(rlx.train.driver, "train_job", core)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["rlx", "sweep", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    code = e.value.code
    return (code if isinstance(code, int) else 1), out, err


def _population_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("rlx: population ")]


def test_a_grid_of_member_keys_is_one_population(monkeypatch, capsys, tmp_path):
    core, sweep = FakeCore(), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "algo.clip_eps=0.1,0.3", "seed=0,1",
                            f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err
    (call,) = core.calls
    cfgs, dirs = call
    assert dirs == _job_dirs(sweep) and [d.name for d in dirs] == ["0", "1", "2", "3"]
    assert [(c["algo"]["clip_eps"], c["seed"]) for c in cfgs] == [(0.1, 0), (0.1, 1), (0.3, 0), (0.3, 1)]
    # as rlx.train.run.train receives a multirun job's config: no hydra node, the sweep's W&B group
    assert all("hydra" not in c and c["logger"]["wandb"]["group"] == sweep.name for c in cfgs)
    assert _population_lines(out) == ["rlx: population 0: 4 members (jobs 0-3), varying: algo.clip_eps, seed"]
    pops = json.loads((sweep / "populations.json").read_text())["populations"]
    assert [p["members"] for p in pops] == [["0", "1", "2", "3"]] and pops[0]["status"] == "ok"
    for d in dirs:  # Hydra's own files, as for any sweep job (rlx report reads the overrides from there)
        assert (d / ".hydra" / "overrides.yaml").is_file() and (d / ".hydra" / "config.yaml").is_file()
    with open(sweep / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["algo.clip_eps"], r["n_seeds"], r["status"]) for r in rows] == [("0.1", "2", "ok"), ("0.3", "2", "ok")]


def test_a_key_that_cannot_vary_splits_populations_in_job_order(monkeypatch, capsys, tmp_path):
    core, sweep = FakeCore(), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "algo.n_steps=64,128", "seed=0,1",
                            f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err
    assert [[d.name for d in dirs] for _, dirs in core.calls] == [["0", "1"], ["2", "3"]]
    assert [[c["algo"]["n_steps"] for c in cfgs] for cfgs, _ in core.calls] == [[64, 64], [128, 128]]
    assert [[c["seed"] for c in cfgs] for cfgs, _ in core.calls] == [[0, 1], [0, 1]]
    assert _population_lines(out) == ["rlx: population 0: 2 members (jobs 0,1), varying: seed",
                                      "rlx: population 1: 2 members (jobs 2,3), varying: seed"]
    pops = json.loads((sweep / "populations.json").read_text())["populations"]
    assert [p["members"] for p in pops] == [["0", "1"], ["2", "3"]]


def test_interleaved_jobs_are_grouped_and_members_keep_their_dirs(monkeypatch, capsys, tmp_path):
    # seed varies slowest here: n_steps alternates from job to job, the populations are jobs 0,2 and 1,3
    core, sweep = FakeCore(), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "seed=0,1", "algo.n_steps=64,128",
                            f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err
    assert [[d.name for d in dirs] for _, dirs in core.calls] == [["0", "2"], ["1", "3"]]
    for d in _job_dirs(sweep):  # each member trained into its own job's dir
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        overrides = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
        assert f"algo.n_steps={cfg['algo']['n_steps']}" in overrides and f"seed={cfg['seed']}" in overrides


def test_a_tuned_preset_for_another_env_is_dropped_as_for_a_plain_run(monkeypatch, capsys, tmp_path):
    # tuned/ppo_cartpole (n_steps 32, 8 envs) comes with env=cartpole but is for CartPole-v1 only
    core, sweep = FakeCore(), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "env.id=Acrobot-v1", "seed=0,1",
                            f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err
    (call,) = core.calls
    assert [(c["env"]["id"], c["algo"]["n_steps"]) for c in call[0]] == [("Acrobot-v1", 2048), ("Acrobot-v1", 2048)]
    assert err.count("rlx: note: tuned preset 'ppo_cartpole' is for CartPole-v1") == 2


def test_max_members_splits_a_population(monkeypatch, capsys, tmp_path):
    core, sweep = FakeCore(), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "algo.clip_eps=0.1,0.3", "seed=0,1",
                            "hydra.launcher.max_members=3", f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err
    assert [[d.name for d in dirs] for _, dirs in core.calls] == [["0", "1", "2"], ["3"]]
    assert _population_lines(out) == ["rlx: population 0: 3 members (jobs 0-2), varying: algo.clip_eps, seed",
                                      "rlx: population 1: 1 member (job 3), varying: nothing"]
    assert all(json.loads((d / "summary.json").read_text())["status"] == "ok" for d in _job_dirs(sweep))


@pytest.mark.parametrize("error, recorded", [(RunFault("loss is NaN; no checkpoint yet"), "loss is NaN; no checkpoint yet"),
                                             (ValueError("boom"), "ValueError: boom")])
def test_a_failing_population_records_its_members_and_the_sweep_goes_on(monkeypatch, capsys, tmp_path, error, recorded):
    core = FakeCore(fail=error, fail_if=lambda cfg: cfg["algo"]["n_steps"] == 64)
    sweep = tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "algo.n_steps=64,128", "seed=0,1",
                            f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 0, err  # some runs finished: the sweep succeeds and reports the failures
    assert len(core.calls) == 2  # the second population still ran
    failed, ok = [[json.loads((sweep / n / "summary.json").read_text()) for n in names] for names in (["0", "1"], ["2", "3"])]
    assert all(s == {"status": "failed", "error": recorded} for s in failed)
    assert all(s["status"] == "ok" for s in ok)
    assert (sweep / "0" / "error.txt").is_file() == isinstance(error, ValueError)  # a traceback for a bug, as hydra_job
    assert f"rlx: population 0 (2 members (jobs 0,1)) failed: {recorded}" in err
    pops = json.loads((sweep / "populations.json").read_text())["populations"]
    assert [p["status"] for p in pops] == ["failed", "ok"] and pops[0]["error"] == recorded
    with open(sweep / "report.csv", newline="") as fh:
        rows = {r["algo.n_steps"]: r for r in csv.DictReader(fh)}
    assert rows["64"]["status"] == "failed" and rows["128"]["status"] == "ok"


def test_every_population_failing_fails_the_sweep(monkeypatch, capsys, tmp_path):
    core, sweep = FakeCore(fail=RunFault("disk full")), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "seed=0,1", f"hydra.sweep.dir={sweep}", *POP, core=core)
    assert code == 1
    assert all(json.loads((d / "summary.json").read_text())["status"] == "failed" for d in _job_dirs(sweep))


def test_a_stopped_population_stops_the_sweep(monkeypatch, capsys, tmp_path):
    core, sweep = FakeCore(status="stopped"), tmp_path / "sw"
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "algo=ppo", "algo.n_steps=64,128", f"hydra.sweep.dir={sweep}",
                            *POP, core=core)
    assert code == 143  # SIGTERM, as a stopped plain run exits
    pops = json.loads((sweep / "populations.json").read_text())["populations"]
    assert [p["status"] for p in pops] == ["stopped", "stopped"]


def test_a_failure_is_never_recorded_over_another_run(tmp_path):
    from rlx.app.launchers.population import _Job, _record_failure
    from rlx.rundir.lock import RunDirLock

    def job(name: str, held_run: bool) -> _Job:
        j = _Job(0, [], OmegaConf.create({}), OmegaConf.create({"overwrite": False}), tmp_path / name)
        j.job_dir.mkdir()
        j.held_run = held_run
        return j

    other = job("other", held_run=True)  # a run from before this sweep, which it was not allowed to replace
    (other.job_dir / "summary.json").write_text('{"status": "ok"}')
    _record_failure(other, "boom", "")
    assert json.loads((other.job_dir / "summary.json").read_text()) == {"status": "ok"}

    busy = job("busy", held_run=False)  # in use by another process
    with RunDirLock(busy.job_dir):
        _record_failure(busy, "boom", "")
    assert not (busy.job_dir / "summary.json").exists()

    fresh = job("fresh", held_run=False)
    _record_failure(fresh, "boom", "trace")
    assert json.loads((fresh.job_dir / "summary.json").read_text()) == {"status": "failed", "error": "boom"}
    assert (fresh.job_dir / "error.txt").read_text() == "trace"


def test_the_preset_composes_with_rlx_own_launcher():
    from rlx.config.compose import compose_config

    launcher = compose_config(["hydra/launcher=population"], return_hydra_config=True).hydra.launcher
    assert launcher._target_ == "hydra_plugins.rlx_population_launcher.PopulationLauncher"
    assert (launcher.max_members, launcher.n_jobs) == (64, 1)
    assert launcher.ray.address is None  # local processes unless asked
    on_ray = compose_config(["hydra/launcher=population_ray"], return_hydra_config=True).hydra.launcher
    assert on_ray._target_ == launcher._target_ and on_ray.ray.address == "auto" and on_ray.ray.max_retries == 1


def test_ray_settings_are_checked(monkeypatch):
    import importlib.util

    from rlx.app.launchers.population import NO_RAY, check_ray_settings
    from rlx.errors import UserError

    assert check_ray_settings(None) is None and check_ray_settings({"address": None, "num_cpus": -1}) is None
    for bad, message in (({"address": "auto", "max_retries": -1}, "hydra.launcher.ray.max_retries=-1: must be an integer >= 0"),
                         ({"address": "auto", "num_gpus": "x"}, "hydra.launcher.ray.num_gpus=x: must be a number >= 0"),
                         ({"adress": "auto"}, "hydra.launcher.ray.adress: no such setting")):
        with pytest.raises(UserError) as bad_input:
            check_ray_settings(bad)
        assert str(bad_input.value).startswith(message), bad_input.value
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError) as e:
        check_ray_settings({"address": "auto"})
    assert str(e.value) == NO_RAY


@pytest.mark.parametrize("args, message", [
    (["algo=a3c"], "hydra/launcher=population: algo=a3c has no population support yet"),
    (["algo=ppo,a3c"], "hydra/launcher=population: algo=a3c has no population support yet"),
    (["hydra.launcher.max_members=0"], "hydra.launcher.max_members=0: must be an integer >= 1"),
    (["hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: must be an integer >= 1"),
])
def test_bad_input_fails_fast(monkeypatch, capsys, tmp_path, args, message):
    core = FakeCore()
    code, out, err = _sweep(monkeypatch, capsys, tmp_path, "seed=0,1", *args, *POP, core=core)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"rlx: error: {message}"), line
    assert core.calls == [] and list(tmp_path.iterdir()) == []  # nothing ran, nothing written


@pytest.mark.slow
def test_a_real_tiny_population_trains_every_member(tmp_path):
    sweep = tmp_path / "sw"
    r = run_cli("sweep", "algo=ppo", "env=cartpole", "algo.clip_eps=0.1,0.3", "total_steps=2048", "algo.n_steps=64",
                "eval.every=1024", "eval.episodes=2", "checkpoint.every=0", f"hydra.sweep.dir={sweep}", *POP, cwd=tmp_path)
    jobs = _job_dirs(sweep)
    assert r.returncode == 0, r.stderr
    assert "rlx: population 0: 2 members (jobs 0,1), varying: algo.clip_eps" in r.stdout
    assert [d.name for d in jobs] == ["0", "1"]
    for d, eps in zip(jobs, (0.1, 0.3), strict=True):
        assert json.loads((d / "summary.json").read_text())["status"] == "ok"
        assert yaml.safe_load((d / "config.yaml").read_text())["algo"]["clip_eps"] == eps
        assert (d / "metrics.jsonl").is_file()
    assert json.loads((sweep / "populations.json").read_text())["populations"][0]["members"] == ["0", "1"]
    with open(sweep / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["algo.clip_eps"], row["status"]) for row in rows] == [("0.1", "ok"), ("0.3", "ok")]
    assert (sweep / "report.md").is_file()
