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
    return subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "algo=a3c", "env=cartpole",
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


def _finish(p: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for the run (killing it past the timeout, so a hung run fails the test instead of CI)."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


@pytest.mark.slow
def test_a3c_on_ray_solves_cartpole_with_both_actors(ray_cluster, tmp_path):
    # Asynchronous, so a seed does not fix the run: like the backend=processes test it asks that A3C *reaches*
    # 475 (a periodic deterministic eval, 10 episodes), not that its last eval does: its evals swing by 100-300
    # between neighbouring evals before and after solving, so it evaluates every 2.5k and stops at the first
    # eval >= 475 (stop.reward_threshold). The budget is the processes test's 300k: 100k was not robust on the
    # 2-core CI machine with the learning tests running beside it (one CI run: best 345 by 100k; 11 earlier
    # local runs had first evals >= 475 at 5k-40k). This config, seeds 0-7, one busy process beside them:
    # stopped at 7.5k/17.5k/25k/12.5k/10k/7.5k/27.5k/12.5k, 24-40 s each (latest 27.5k: an 11x margin).
    run = tmp_path / "run"
    p = _train(run, ray_cluster, "total_steps=300000", "eval.every=2500", "stop.reward_threshold=475", "seed=0")
    out, err = _finish(p, timeout=900)
    assert p.returncode == 0, err[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "ok" and s["stopped_by"] == "reward_threshold", s
    assert s["best_eval_return"] >= 475 and s["env_steps"] < 300000
    assert len(s["worker_updates"]) == 2 and min(s["worker_updates"]) > 0.25 * sum(s["worker_updates"])
    hist = {int(k): v for k, v in s["staleness"]["histogram"].items()}
    assert sum(hist.values()) == sum(s["worker_updates"]) and 0.5 <= s["staleness"]["mean"] <= 2


@pytest.mark.slow
def test_a3c_on_ray_survives_a_killed_worker_actor(ray_cluster, tmp_path):
    # Worker actor 1's process is SIGKILLed mid-run: Ray restarts the actor, the learner counts the restart
    # and goes on with the new process's gradients; the run finishes every step. Measured with 40k steps
    # (one busy process beside it): the killed worker made 39-40% of the updates; 60k leaves more margin.
    run = tmp_path / "run"
    p = _train(run, ray_cluster, "total_steps=60000", "eval.every=0", "eval.episodes=2", "seed=0")
    try:
        _wait_for_steps(p, run, 5000)
        before = {w["rank"]: w["pid"] for w in json.loads((run / "ray_workers.json").read_text())}
        os.kill(before[1], signal.SIGKILL)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    out, err = _finish(p, timeout=480)
    assert p.returncode == 0, err[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "ok" and s["env_steps"] >= 60000
    assert s["worker_restarts"] == [0, 1] and "A3C worker 1 died" in err
    after = {w["rank"]: w["pid"] for w in json.loads((run / "ray_workers.json").read_text())}
    assert after[0] == before[0] and after[1] != before[1]
    # the restarted actor went on computing gradients: worker 1 has a fair share of the updates, not just its first 5k steps
    assert len(s["worker_updates"]) == 2 and min(s["worker_updates"]) > 0.25 * sum(s["worker_updates"])
    hist = {int(k): v for k, v in s["staleness"]["histogram"].items()}
    assert sum(hist.values()) == sum(s["worker_updates"])


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
    from rlx.train.loops.ray_workers import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(UserError, match=r"algo.backend=ray needs Ray: pip install 'rlx\[ray\]'"):
        import_ray()
