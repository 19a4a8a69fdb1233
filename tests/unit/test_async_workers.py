"""The A3C process loop: several workers contribute, a crashed worker stops the run with its
traceback, Ctrl-C stops every worker. Short real runs (worker processes start in ~2 s each)."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from tests.learning.helpers import train_summary


class ExplodingEnv(gym.Env):
    """CartPole-shaped env whose step raises after a few calls (in the workers; the main process
    only builds it once to read its spaces)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t > 20:
            raise RuntimeError("boom: the env blew up")
        return np.zeros(4, np.float32), 1.0, False, False, {}


def test_a3c_workers_both_contribute_and_the_run_checkpoints(tmp_path):
    s = train_summary(["algo=a3c", "env=cartpole", "total_steps=4000", "eval.every=2000", "eval.episodes=2"], tmp_path)
    assert s["status"] == "ok" and s["env_steps"] >= 4000
    assert len(s["worker_updates"]) == 2 and min(s["worker_updates"]) > 0
    assert s["updates"] == sum(s["worker_updates"])  # every worker update reached the main process
    assert (tmp_path / "checkpoints" / "last.pt").exists() and not multiprocessing.active_children()


def test_a3c_crashed_worker_is_reported_and_no_worker_is_left(tmp_path):
    from rlx.errors import RunFault

    with pytest.raises(RunFault, match="WorkerError: A3C worker .* crashed.*boom: the env blew up"):
        train_summary(["algo=a3c", f"env.id={__name__}:ExplodingEnv", "total_steps=100000", "eval.every=0"], tmp_path)
    assert not multiprocessing.active_children()


def _children(pid: int) -> set[int]:
    out = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out |= {int(c) for c in f.read().split()}
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_every_worker(tmp_path):
    cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "algo=a3c", "algo.num_workers=2",
           "total_steps=10000000", "eval.every=0", "logger.progress=false", "logger.wandb.mode=disabled",
           f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:  # the workers (and spawn's resource tracker)
        time.sleep(0.5)
        workers = {c for c in _children(proc.pid) if b"spawn_main" in open(f"/proc/{c}/cmdline", "rb").read()}
    assert len(workers) == 2, "workers did not start"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the whole group
    assert proc.wait(timeout=30) == 130, proc.stderr.read().decode()
    alive = [w for w in workers if os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2] != "Z"]
    assert not alive
    summary = json.loads((tmp_path / "summary.json").read_text())  # stopped cleanly, with a checkpoint to resume
    assert summary["status"] == "stopped" and summary["stopped_by"] == "SIGINT"
    assert (tmp_path / "checkpoints" / "last.pt").exists()
