"""`rlx sweep` end to end through the real CLI: a tiny multirun and its report, one W&B group, the joblib
launcher running runs in parallel, a failing run that does not kill the sweep, bad input that fails fast."""
import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PPO CartPole with RL-Zoo's preset (8 envs x 32 steps): 512 steps = 2 updates; evals every 256 steps.
TINY = ["total_steps=512", "eval.every=256", "eval.episodes=2", "checkpoint.every=0", *FAST]


def _job_dirs(sweep: Path) -> list[Path]:
    return sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """2 ε values x 2 seeds, W&B offline, the default sweep dir (multirun/<timestamp> under the cwd)."""
    cwd = tmp_path_factory.mktemp("sweep")
    r = run_cli("sweep", "algo=ppo", "algo.clip_eps=0.1,0.3", "seed=0,1", "logger.wandb.mode=offline", *TINY, cwd=cwd)
    assert r.returncode == 0, r.stderr
    (sweep,) = list((cwd / "multirun").iterdir())
    return sweep, r


def test_sweep_runs_every_combination_and_writes_the_report(tiny_sweep):
    sweep, r = tiny_sweep
    jobs = _job_dirs(sweep)
    assert [d.name for d in jobs] == ["0", "1", "2", "3"]
    swept = set()
    for d in jobs:
        assert json.loads((d / "summary.json").read_text())["status"] == "ok"
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        swept.add((cfg["algo"]["clip_eps"], cfg["seed"]))
    assert swept == {(0.1, 0), (0.1, 1), (0.3, 0), (0.3, 1)}

    with open(sweep / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["algo.clip_eps"] for row in rows] == ["0.1", "0.3"]
    assert all(row["status"] == "ok" and row["n_seeds"] == "2" and row["n_failed"] == "0" for row in rows)
    assert sum(row["best"] == "True" for row in rows) == 1
    md = (sweep / "report.md").read_text()
    assert "| algo.clip_eps |" in md and "Best: algo.clip_eps=" in md
    assert (sweep / "report.png").read_bytes().startswith(PNG_MAGIC)
    assert "Sweep report" in r.stdout and "report.md" in r.stdout  # the table is printed too


def test_sweep_runs_share_one_wandb_group(tiny_sweep):
    sweep, _ = tiny_sweep
    groups = {yaml.safe_load((d / "config.yaml").read_text())["logger"]["wandb"]["group"] for d in _job_dirs(sweep)}
    assert groups == {sweep.name}  # the sweep's id
    for d in _job_dirs(sweep):  # ... and W&B itself recorded it (offline run file)
        (data,) = list((d / "wandb").glob("offline-run-*/run-*.wandb"))
        assert sweep.name.encode() in data.read_bytes()


def test_report_command_regenerates_the_report(tiny_sweep, tmp_path):
    sweep, _ = tiny_sweep
    for name in ("report.md", "report.csv", "report.png"):
        (sweep / name).unlink()
    r = run_cli("report", str(sweep), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all((sweep / name).is_file() for name in ("report.md", "report.csv", "report.png"))
    r = run_cli("report", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_joblib_launcher_runs_jobs_in_parallel(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sw"
    r = run_cli("sweep", "seed=0,1", "total_steps=4096", "eval.every=0", "eval.episodes=2", "checkpoint.every=0",
                "logger.wandb.mode=disabled", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                f"hydra.sweep.dir={sweep}", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = _job_dirs(sweep)
    assert len(jobs) == 2 and (sweep / "report.md").is_file()
    # Each run writes config.yaml when it starts and summary.json when it ends: the intervals overlap.
    spans = [((d / "config.yaml").stat().st_mtime, (d / "summary.json").stat().st_mtime) for d in jobs]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


CRASHING_ENV = '''
from gymnasium.envs.classic_control import CartPoleEnv


class CrashingCartPole(CartPoleEnv):
    """Builds and passes gymnasium's env checker, then crashes mid-training: a failure only a run can find."""

    steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps > 20:
            raise RuntimeError("deliberate crash in step()")
        return super().step(action)
'''


def test_a_failing_run_is_reported_and_does_not_kill_the_sweep(tmp_path):
    (tmp_path / "crashing_env.py").write_text(CRASHING_ENV)  # importable: the cwd is on sys.path
    sweep = tmp_path / "sw"
    r = run_cli("sweep", "env.id=crashing_env:CrashingCartPole,CartPole-v1", "logger.wandb.mode=disabled",
                f"hydra.sweep.dir={sweep}", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    failed, ok = (json.loads((d / "summary.json").read_text()) for d in _job_dirs(sweep))
    assert failed["status"] == "failed" and "deliberate crash" in failed["error"] and ok["status"] == "ok"
    with open(sweep / "report.csv", newline="") as fh:
        rows = {row["env.id"]: row for row in csv.DictReader(fh)}
    assert rows["crashing_env:CrashingCartPole"]["status"] == "failed"
    assert "RuntimeError: deliberate crash in step()" in rows["crashing_env:CrashingCartPole"]["errors"]
    assert rows["CartPole-v1"]["status"] == "ok" and rows["CartPole-v1"]["best"] == "True"
    assert "## Failed runs" in (sweep / "report.md").read_text()


def test_bad_sweep_key_fails_fast(tmp_path):
    r = run_cli("sweep", "algo=ppo", "algo.tau=0.1,0.2", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "'algo.tau'" in line and "algo=ppo" in line
    assert "Traceback" not in r.stderr and not (tmp_path / "multirun").exists()
