"""`algo=a3c algo.backend=ray` against a real local Ray cluster (tests/ray/conftest.py): worker Ray actors,
the learner in the `rlx train` process applying their gradients as they arrive."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli

QUIET = ["logger.wandb.mode=disabled", "logger.tensorboard=false", *FAST]


def _train(run: Path, address: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from rlx.cli import main; main()", "train", "algo=a3c", "env=cartpole",
                             "algo.backend=ray", f"algo.ray_address={address}", f"hydra.run.dir={run}", *QUIET, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(p: subprocess.Popen, run: Path, steps: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
        lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
        if any(json.loads(line).get("env_steps", 0) >= steps for line in lines if line.strip()):
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_a3c_on_ray_learns_cartpole_with_both_actors_and_survives_a_killed_worker(ray_cluster, tmp_path):
    # Asynchronous, so a seed does not fix the run: like the backend=processes test it asks that A3C *reaches*
    # 475 (best periodic deterministic eval, 10 episodes), not that its last eval does: its evals swing by
    # 100-300 between neighbouring evals before and after solving, so a sparse eval grid can miss every peak.
    # 40k steps with an eval every 10k was not robust (one CI run: best 340; re-measured, a seed-2 run would
    # have had 415 on that grid), hence 100k steps with an eval every 2.5k. Measured on the 2-core machine
    # shared with other test runs (load average 5-9), worker 1 killed at 8k, first eval >= 475 / best:
    #   this config (100k): seeds 3/4/5 at 10k/17.5k/10k, best 500/500/500, 75-85 s each;
    #   every 2.5k to 80k: seeds 0/1/2 at 7.5k/7.5k/37.5k, best 500/500/487; to 60k: seeds 0/1/2/7/8 at
    #   7.5k/7.5k/20k/10k/5k, best 500/500/500/490/500; every 5k to 60k: seeds 2-6 at 25k/10k/10k/20k/40k.
    # Latest first >= 475 seen: 40k (2.5x margin). Killed worker: 42-47% of the updates; staleness mean 0.84-0.95.
    run = tmp_path / "run"
    p = _train(run, ray_cluster, "total_steps=100000", "eval.every=2500", "seed=0")
    try:
        _wait_for_steps(p, run, 8000)
        before = {w["rank"]: w["pid"] for w in json.loads((run / "ray_workers.json").read_text())}
        os.kill(before[1], signal.SIGKILL)  # worker actor 1's process: Ray restarts it, the run goes on
        out, err = p.communicate(timeout=480)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "ok" and s["env_steps"] >= 100000
    assert s["worker_restarts"] == [0, 1] and "A3C worker 1 died" in err
    after = {w["rank"]: w["pid"] for w in json.loads((run / "ray_workers.json").read_text())}
    assert after[0] == before[0] and after[1] != before[1]
    assert len(s["worker_updates"]) == 2 and min(s["worker_updates"]) > 0.25 * sum(s["worker_updates"])
    hist = {int(k): v for k, v in s["staleness"]["histogram"].items()}
    assert sum(hist.values()) == sum(s["worker_updates"]) and 0.5 <= s["staleness"]["mean"] <= 2
    assert s["best_eval_return"] >= 475, s


def test_sigterm_checkpoints_an_a3c_ray_run_and_rlx_resume_finishes_it(ray_cluster, tmp_path):
    run = tmp_path / "run"
    p = _train(run, ray_cluster, "total_steps=6000", "eval.every=0", "eval.episodes=2", "checkpoint.every=0", "logger.every=500")
    try:
        _wait_for_steps(p, run, 1000)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 143
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["status"] == "stopped" and (run / "checkpoints" / "last.pt").is_file()
    r = run_cli("resume", str(run), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "ok" and s["env_steps"] >= 6000 and sum(s["worker_updates"]) > sum(stopped.get("worker_updates") or [0])


def test_without_ray_backend_ray_is_a_one_line_error(monkeypatch):
    from rlx.errors import UserError
    from rlx.loops.ray_workers import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(UserError, match=r"algo.backend=ray needs Ray: pip install 'rlx\[ray\]'"):
        import_ray()
