"""Through the real CLI with W&B offline (the default): RUN_DIR/rlx.log holds the run's message lines, and W&B,
started in the background, still gets every metrics line, the summary and the exit code into its files,
on a normal end and on the SIGTERM path."""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli


def _wandb_records(run_dir: Path) -> list[tuple[str, object]]:
    """(kind, payload) of the records in the run's offline ``.wandb`` file (a LevelDB-style log of protobufs):
    history lines as {key: value}, summary updates as key lists, the exit record as its exit code."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    assert data[:4] == b":W&B"
    chunks, pos, block, buf = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):  # full, last
            chunks.append(buf)
    out: list[tuple[str, object]] = []
    for chunk in chunks:
        r = pb.Record()
        r.ParseFromString(chunk)
        kind = r.WhichOneof("record_type")
        if kind == "history":
            out.append(("history", {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}))
        elif kind == "summary":
            out.append(("summary", [i.key or ".".join(i.nested_key) for i in r.summary.update]))
        elif kind == "exit":
            out.append(("exit", r.exit.exit_code))
    return out


def _check_wandb_has_everything(run: Path, exit_code: int) -> None:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = _wandb_records(run)
    history = [p for k, p in records if k == "history"]
    assert [h["env_steps"] for h in history] == [line["env_steps"] for line in lines]  # all, in order
    summary_keys = {key for k, p in records if k == "summary" for key in p}  # type: ignore[union-attr]
    assert {"status", "env_steps"} <= summary_keys
    assert records[-1] == ("exit", exit_code)


def test_a_run_logs_its_messages_to_rlx_log_and_its_records_to_wandb(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", "total_steps=256", "eval.episodes=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    log = (run / "rlx.log").read_text()
    assert f"rlx: run ppo on CartPole-v1 in {run}" in log and "warning" not in log
    for line in r.stderr.splitlines():  # every message the run printed
        if line.startswith("rlx: "):
            assert line in log, line
    _check_wandb_has_everything(run, 0)


def test_sigterm_still_writes_wandb_files_and_rlx_log(tmp_path):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "total_steps=10000000",
                          "checkpoint.every=0", "eval.every=0", "eval.episodes=1", "logger.every=256",
                          f"hydra.run.dir={run}", *FAST], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    end = time.time() + 60
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert time.time() < end and p.poll() is None, "the run never logged"
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    log = (run / "rlx.log").read_text()
    assert "rlx: SIGTERM received" in log and "rlx: stopped by SIGTERM" in log
    _check_wandb_has_everything(run, 0)  # a stop that checkpointed is a clean end for W&B


def test_wandb_online_unreachable_ends_in_offline_files_with_every_record(tmp_path):
    """The real W&B, a server that never answers, and WANDB_MODE unset (an empty WANDB_MODE makes W&B's settings
    fail at once, before any network wait): W&B gives up within init_timeout in its thread, then logs offline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{server.getsockname()[1]}")
    run = tmp_path / "run"
    try:
        r = subprocess.run([sys.executable, "-c", "from rlx.app.cli import main; main()", "train", "total_steps=512",
                            "eval.every=0", "eval.episodes=1", "logger.every=256", "logger.wandb.mode=online",
                            "logger.wandb.init_timeout=2", f"hydra.run.dir={run}", *FAST], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    finally:
        server.close()
        for c in held:
            c.close()
    assert r.returncode == 0, r.stderr
    assert "W&B online unreachable within 2s" in r.stderr and "could not start" not in r.stderr
    assert "W&B online unreachable within 2s" in (run / "rlx.log").read_text()
    _check_wandb_has_everything(run, 0)


CRASHING_ENV = '''
from gymnasium.envs.classic_control import CartPoleEnv


class CrashingCartPole(CartPoleEnv):
    """Crashes mid-training, after a few metrics lines."""

    steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps > 200:
            raise RuntimeError("deliberate crash in step()")
        return super().step(action)
'''


def test_a_run_that_crashes_records_its_error_in_rlx_log_and_ends_its_wandb_run(tmp_path):
    (tmp_path / "crashing_env.py").write_text(CRASHING_ENV)  # importable: the cwd is on sys.path
    run = tmp_path / "run"
    r = run_cli("train", "env.id=crashing_env:CrashingCartPole", "total_steps=100000", "eval.every=0", "eval.episodes=1",
                "checkpoint.every=0", "logger.every=64", "env.num_envs=2", "algo.n_steps=32", f"hydra.run.dir={run}",
                *FAST, cwd=tmp_path)
    assert r.returncode == 1 and "deliberate crash" in r.stderr
    log = (run / "rlx.log").read_text()
    (error,) = [line for line in log.splitlines() if "[rlx][ERROR] - rlx: error: " in line]
    assert "RuntimeError: deliberate crash in step()" in error
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = _wandb_records(run)
    assert lines and [p["env_steps"] for k, p in records if k == "history"] == [x["env_steps"] for x in lines]
    assert records[-1] == ("exit", 1)
