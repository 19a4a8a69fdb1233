"""`rlx sweep ... hydra/launcher=population hydra.launcher.ray.address=...` against a real local Ray cluster
(tests/ray/conftest.py): each population ONE Ray task, its members' run dirs and the report as for a local
population sweep, and a population whose Ray worker is killed started over (overwriting its members'
half-written dirs) by Ray's retry."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import FAST, run_cli

TINY = ["algo=ppo", "env=cartpole", "total_steps=2048", "algo.n_steps=64", "eval.every=1024", "eval.episodes=2",
        "checkpoint.every=0", "logger.wandb.mode=disabled", "logger.tensorboard=false", *FAST]


def _args(sweep: Path, address: str, *more: str) -> list[str]:
    return ["sweep", "algo.clip_eps=0.1,0.3", "seed=0,1", *TINY, "hydra/launcher=population",
            f"hydra.launcher.ray.address={address}", *more, f"hydra.sweep.dir={sweep}"]


def _check_sweep(sweep: Path) -> None:
    jobs = sorted(d.name for d in sweep.iterdir() if d.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "ok"
    (pop,) = json.loads((sweep / "populations.json").read_text())["populations"]
    assert pop["members"] == jobs and pop["status"] == "ok"
    with open(sweep / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(row["algo.clip_eps"] for row in rows) == ["0.1", "0.3"]
    assert all(row["n_seeds"] == "2" and row["n_failed"] == "0" for row in rows)
    assert (sweep / "report.md").is_file()


def test_a_population_sweep_on_a_ray_cluster_runs_each_population_as_one_ray_task(ray_cluster, tmp_path):
    sweep = tmp_path / "sw"
    r = run_cli(*_args(sweep, ray_cluster), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rlx: population 0: 4 members (jobs 0-3), varying: algo.clip_eps, seed" in r.stdout
    assert sorted(p.name for p in (sweep / ".ray").iterdir()) == ["population_0.json"]  # one task for the 4 members
    (attempt,) = json.loads((sweep / ".ray" / "population_0.json").read_text())  # ran once, in a Ray worker process
    assert attempt["pid"] not in (attempt["driver_pid"], os.getpid())
    _check_sweep(sweep)
    assert "report.md" in r.stdout


def test_a_population_whose_ray_worker_is_killed_starts_over_and_finishes(ray_cluster, tmp_path):
    sweep = tmp_path / "sw"
    args = _args(sweep, ray_cluster, "hydra.launcher.ray.max_retries=1")
    proc = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker, metrics = sweep / ".ray" / "population_0.json", sweep / "3" / "metrics.jsonl"
        deadline = time.monotonic() + 180
        while not (marker.is_file() and metrics.is_file() and metrics.stat().st_size):  # the members are training
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        (attempt,) = json.loads(marker.read_text())
        os.kill(attempt["pid"], signal.SIGKILL)  # the members' dirs now hold half-written runs
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    first, second = json.loads(marker.read_text())  # Ray's retry started the population over in a new worker
    assert second["pid"] != first["pid"]
    _check_sweep(sweep)


def test_a_population_whose_ray_worker_dies_past_max_retries_is_recorded_failed_and_the_sweep_goes_on(ray_cluster, tmp_path):
    sweep = tmp_path / "sw"
    args = ["sweep", "algo.n_steps=64,128", "seed=0,1", *[a for a in TINY if not a.startswith("algo.n_steps")],
            "hydra/launcher=population", f"hydra.launcher.ray.address={ray_cluster}", "hydra.launcher.ray.max_retries=0",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker, metrics = sweep / ".ray" / "population_0.json", sweep / "0" / "metrics.jsonl"
        deadline = time.monotonic() + 180
        while not (marker.is_file() and metrics.is_file() and metrics.stat().st_size):  # population 0 is training
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        (attempt,) = json.loads(marker.read_text())
        os.kill(attempt["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]  # population 1 finished: the sweep succeeds and reports the failures
    assert "rlx: population 0: 2 members (jobs 0,1), varying: seed" in out
    for job in ("0", "1"):  # every member of the killed population
        failed = json.loads((sweep / job / "summary.json").read_text())
        assert failed["status"] == "failed" and "Ray task of population 0 failed after 0 retries" in failed["error"]
    for job in ("2", "3"):
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "ok"
    assert [p["status"] for p in json.loads((sweep / "populations.json").read_text())["populations"]] == ["failed", "ok"]
    with open(sweep / "report.csv", newline="") as fh:
        rows = {row["algo.n_steps"]: row for row in csv.DictReader(fh)}
    assert rows["64"]["n_failed"] == "2" and rows["128"]["n_failed"] == "0"
    assert (sweep / "report.md").is_file()
