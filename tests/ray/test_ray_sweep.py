"""`rlx sweep ... hydra/launcher=ray_cluster` against a real local Ray cluster (tests/ray/conftest.py):
every job a Ray task, the report at the end, and a job whose worker process is killed recorded as failed
while the other jobs finish."""
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

TINY = ["algo=ppo", "total_steps=512", "eval.every=256", "eval.episodes=2", "checkpoint.every=0", "logger.wandb.mode=disabled",
        "logger.tensorboard=false", *FAST]


def _report(sweep: Path) -> list[dict]:
    with open(sweep / "report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_on_a_ray_cluster_runs_every_job_as_a_ray_task_and_writes_the_report(ray_cluster, tmp_path):
    sweep = tmp_path / "sw"
    r = run_cli("sweep", "algo.clip_eps=0.1,0.3", "seed=0,1", *TINY, "hydra/launcher=ray_cluster",
                f"hydra.launcher.address={ray_cluster}", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted(d.name for d in sweep.iterdir() if d.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "ok"
        (attempt,) = json.loads((sweep / ".ray" / f"{job}.json").read_text())  # ran once, in a Ray worker process
        assert attempt["pid"] != os.getpid()
    rows = _report(sweep)
    assert [row["algo.clip_eps"] for row in rows] == ["0.1", "0.3"]
    assert all(row["n_seeds"] == "2" and row["n_failed"] == "0" for row in rows)
    assert (sweep / "report.md").is_file() and "report.md" in r.stdout
    # `rlx resume SWEEP_DIR` on a Ray sweep's dir (issue 22): every run goes on from its last.pt (here: extended)
    r = run_cli("resume", str(sweep), "total_steps=1024", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for job in jobs:
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["env_steps"] == 1024, summary


def test_a_job_whose_ray_worker_is_killed_is_recorded_as_failed_and_the_sweep_finishes(ray_cluster, tmp_path):
    sweep = tmp_path / "sw"
    args = ["sweep", "total_steps=512,200000", *[a for a in TINY if not a.startswith("total_steps")], "hydra/launcher=ray_cluster",
            f"hydra.launcher.address={ray_cluster}", "hydra.launcher.max_retries=0", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        marker, metrics = sweep / ".ray" / "1.json", sweep / "1" / "metrics.jsonl"
        deadline = time.monotonic() + 180
        while not (marker.is_file() and metrics.is_file() and metrics.stat().st_size):  # job 1 is training
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        (attempt,) = json.loads(marker.read_text())
        os.kill(attempt["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]  # one job finished: the sweep succeeds and reports the failure
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "ok"
    failed = json.loads((sweep / "1" / "summary.json").read_text())
    assert failed["status"] == "failed" and "Ray task of job 1 failed" in failed["error"]
    rows = {row["total_steps"]: row for row in _report(sweep)}
    assert rows["512"]["n_seeds"] == "1" and rows["200000"]["n_failed"] == "1"
    assert "1 of 2 runs failed" in out
