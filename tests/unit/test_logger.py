"""The run's Logger: W&B runs in a child process (records queued, then replayed in order), and every message
line of the run also lands in RUN_DIR/rlx.log."""
import json
import os
import re
import signal
import sys
import threading
import time
import types
from io import StringIO

import pytest
from rich.console import Console

from rlx.config.schema import WandbConfig
from rlx.errors import RunFault, UserError
from rlx.rundir import logging as rlx_logging
from rlx.rundir.logging import RUN_LOG, Logger, record_run_error

# A stand-in `wandb` package for the W&B child process (rlx.rundir.wandb_process): it appends every call to
# calls.jsonl in its directory, its init waits for the file `gate` (as a slow W&B start does), fails for the modes
# listed in `fail_modes`, and a run's log raises a full disk's OSError once the file `broken` exists.
FAKE_WANDB = """
import json, os, time
from pathlib import Path
HERE = Path(os.environ["RLX_FAKE_WANDB"])

def _record(*call):
    with open(HERE / "calls.jsonl", "a") as f:
        f.write(json.dumps(call) + "\\n")

class _Summary(dict):
    def __setitem__(self, k, v):
        _record("summary", k, v)

class _Run:
    def __init__(self, run_id, mode):
        self.id, self.mode, self.summary = run_id, mode, _Summary()
    def define_metric(self, name, **kw):
        _record("define_metric", name)
    def log(self, data):
        if (HERE / "broken").exists():
            raise OSError(28, "No space left on device")
        _record("log", data)
    def finish(self, exit_code=0):
        _record("finish", exit_code)

def Settings(**kw):
    return kw

def init(**kw):
    _record("init", kw)
    try:
        deadline = time.time() + 10
        while not (HERE / "gate").exists() and time.time() < deadline:
            time.sleep(0.01)
        fail = json.loads((HERE / "fail_modes").read_text()) if (HERE / "fail_modes").exists() else []
        if kw["mode"] in fail:
            raise TimeoutError(kw["mode"] + ": no answer")
        return _Run(kw["id"], kw["mode"])
    finally:
        _record("init_end")
"""


class FakeWandb:
    """The test's side of FAKE_WANDB: open the gate, set the failing modes, read what W&B was given."""

    def __init__(self, root):
        self.root = root
        self.gate = types.SimpleNamespace(set=lambda: (root / "gate").touch())

    def fail(self, *modes):
        (root := self.root / "fail_modes").write_text(json.dumps(list(modes)))
        return root

    def _all(self):
        path = self.root / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [tuple(json.loads(line)) for line in lines]

    @property
    def inits(self):
        return [c[1] for c in self._all() if c[0] == "init"]

    @property
    def calls(self):
        return [c for c in self._all() if c[0] not in ("init", "init_end")]

    @property
    def max_active(self):
        active = most = 0
        for c in self._all():
            active += {"init": 1, "init_end": -1}.get(c[0], 0)
            most = max(most, active)
        return most


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    """FAKE_WANDB importable as `wandb` in a fresh W&B child process (stopped again after the test)."""
    root = tmp_path / "fake_wandb"
    (root / "wandb").mkdir(parents=True)
    (root / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    monkeypatch.setenv("RLX_FAKE_WANDB", str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    rlx_logging._stop_wandb_host()
    yield FakeWandb(root)
    rlx_logging._stop_wandb_host(timeout=10)


def _logger(tmp_path, mode="offline", **kw):
    out = StringIO()
    logger = Logger(tmp_path, {"logger": {"tensorboard": False}, "seed": 0}, WandbConfig(mode=mode, init_timeout=2),
                    total_steps=1024, progress=False, console=Console(file=out, width=200), **kw)
    return logger, out


def test_wandb_starts_in_the_background_and_gets_every_record_in_order(tmp_path, fake_wandb):
    logger, _ = _logger(tmp_path)
    # W&B is still starting (init waits on the gate): the logger is built, its run id known, logging goes on
    assert re.fullmatch(r"[a-z0-9]{8}", logger.wandb_id)
    lines = [{"env_steps": 256 * k, "sps": float(k), "loss": float("nan") if k == 2 else 0.5} for k in range(1, 5)]
    for line in lines:
        logger.log(line)
    logger.summary({"status": "ok", "env_steps": 1024, "nested": {"x": 1}})
    assert fake_wandb.calls == []  # nothing waited for W&B
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4  # metrics.jsonl does not wait either
    fake_wandb.gate.set()  # W&B comes up
    logger.close(0)
    init = fake_wandb.inits[0]
    assert init["id"] == logger.wandb_id and init["resume"] == "allow" and init["mode"] == "offline"
    assert init["config"] == {"logger": {"tensorboard": False}, "seed": 0}
    logged = [c[1] for c in fake_wandb.calls if c[0] == "log"]
    assert logged == [{k: v for k, v in line.items() if v == v} for line in lines]  # in order, NaN dropped
    assert [c[0] for c in fake_wandb.calls] == ["define_metric"] * 2 + ["log"] * 4 + ["summary"] * 2 + ["finish"]
    assert ("summary", "status", "ok") in fake_wandb.calls and fake_wandb.calls[-1] == ("finish", 0)


def test_a_resumed_run_continues_its_wandb_run_and_the_exit_code_reaches_it(tmp_path, fake_wandb):
    fake_wandb.gate.set()
    logger, _ = _logger(tmp_path, wandb_id="abc12345")
    assert logger.wandb_id == "abc12345"
    logger.log({"env_steps": 512})
    logger.close(1)
    assert fake_wandb.inits[0]["id"] == "abc12345" and fake_wandb.calls[-1] == ("finish", 1)


def test_wandb_online_unreachable_falls_back_offline_without_losing_records(tmp_path, fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    fake_wandb.fail("online")
    logger, out = _logger(tmp_path, mode="online")
    logger.log({"env_steps": 256, "sps": 1.0})
    fake_wandb.gate.set()
    logger.log({"env_steps": 512, "sps": 2.0})
    logger.close(0)
    assert [kw["mode"] for kw in fake_wandb.inits] == ["online", "offline"]
    # W&B keeps a failed online run's id "in use" in the process: the offline files get a new id, checkpoints follow
    assert fake_wandb.inits[1]["id"] != fake_wandb.inits[0]["id"] and logger.wandb_id == fake_wandb.inits[1]["id"]
    assert [c[1]["env_steps"] for c in fake_wandb.calls if c[0] == "log"] == [256, 512]
    assert "W&B online unreachable within 2s" in out.getvalue()
    assert "W&B online unreachable within 2s" in (tmp_path / RUN_LOG).read_text()


def test_wandb_that_cannot_start_leaves_training_alone(tmp_path, fake_wandb):
    fake_wandb.fail("offline")
    fake_wandb.gate.set()
    logger, out = _logger(tmp_path)
    logger.log({"env_steps": 256})
    logger.summary({"status": "ok"})
    logger.close(0)
    assert fake_wandb.calls == [] and "W&B could not start" in out.getvalue()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_population_members_start_wandb_one_at_a_time(tmp_path, fake_wandb):
    loggers = []
    for k in range(3):
        (tmp_path / str(k)).mkdir()
        loggers.append(_logger(tmp_path / str(k))[0])
    fake_wandb.gate.set()
    for k, logger in enumerate(loggers):
        logger.log({"env_steps": 256, "member": k})
    for logger in loggers:
        logger.close(0)
    assert fake_wandb.max_active == 1 and len(fake_wandb.inits) == 3
    assert len({kw["id"] for kw in fake_wandb.inits}) == 3
    assert sorted(c[1]["member"] for c in fake_wandb.calls if c[0] == "log") == [0, 1, 2]
    assert [c for c in fake_wandb.calls if c[0] == "finish"] == [("finish", 0)] * 3


def test_a_logger_never_closed_still_finishes_its_wandb_run_at_exit(tmp_path, fake_wandb):
    fake_wandb.gate.set()
    logger, _ = _logger(tmp_path)
    logger.log({"env_steps": 256})
    rlx_logging._finish_open_runs()  # what atexit runs
    assert [c[0] for c in fake_wandb.calls][-2:] == ["log", "finish"]
    logger.close(0)  # a later close is harmless
    assert [c[0] for c in fake_wandb.calls].count("finish") == 1


def test_messages_and_the_error_that_ends_a_run_go_to_rlx_log(tmp_path):
    logger, out = _logger(tmp_path, mode="disabled")
    logger.message("rlx: run ppo on CartPole-v1 in somewhere")
    logger.message("rlx: warning: something odd")
    with pytest.raises(RunFault):
        try:
            raise RunFault("disk full; last good checkpoint: x/last.pt")
        finally:
            logger.close(1)
    text = (tmp_path / RUN_LOG).read_text()
    lines = text.splitlines()
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[rlx\]\[INFO\] - rlx: run ppo on CartPole-v1 in somewhere$",
                    lines[0])
    assert lines[1].endswith("[rlx][WARNING] - rlx: warning: something odd")
    assert lines[2].endswith("[rlx][ERROR] - rlx: error: disk full; last good checkpoint: x/last.pt")
    assert "rlx: run ppo" in out.getvalue() and "error" not in out.getvalue()  # the CLI prints the error itself

    logger, _ = _logger(tmp_path, mode="disabled")  # an unexpected exception: its traceback too
    with pytest.raises(ZeroDivisionError) as info:
        try:
            raise ZeroDivisionError("division by zero")
        finally:
            logger.close(1)
    record_run_error(tmp_path, info.value)  # what the CLI's error path adds: nothing, it is there already
    text = (tmp_path / RUN_LOG).read_text()
    assert text.count("rlx: error: ZeroDivisionError: division by zero") == 1 and "Traceback (most recent call last)" in text
    record_run_error(tmp_path, UserError("env.id=x: no such env"))  # an error before any Logger existed
    assert text.count("\n") + 1 == (text := (tmp_path / RUN_LOG).read_text()).count("\n")
    assert text.endswith("[rlx][ERROR] - rlx: error: env.id=x: no such env\n")

    logger, _ = _logger(tmp_path, mode="disabled")  # a clean end records no error
    logger.close(0)
    assert (tmp_path / RUN_LOG).read_text() == text


def test_a_wandb_run_that_breaks_mid_run_is_dropped_with_one_warning(tmp_path, fake_wandb):
    fake_wandb.gate.set()
    logger, out = _logger(tmp_path)
    (fake_wandb.root / "broken").touch()  # W&B's log breaks (a full disk)
    for k in range(1, 5):
        logger.log({"env_steps": 256 * k})
    logger.close(0)
    assert out.getvalue().count("W&B stopped logging (OSError") == 1
    assert fake_wandb.calls[-1] == ("finish", 1)  # its files closed, marked as not a clean end
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 4  # metrics.jsonl has every line


def test_the_runs_end_waits_for_a_wandb_still_starting_and_flushes_every_record_in_order(tmp_path, fake_wandb):
    """Every record logged before W&B was up reaches it, in order, and ``close`` returns only once W&B has them
    all and finished: a run that ends while W&B is still starting (short runs: W&B takes seconds) loses nothing."""
    logger, _ = _logger(tmp_path)
    for k in range(1, 9):
        logger.log({"env_steps": 128 * k, "sps": float(k)})
    logger.summary({"status": "ok", "env_steps": 1024})
    deadline = time.monotonic() + 30
    while not fake_wandb.inits and time.monotonic() < deadline:  # the W&B process is up and in its init
        time.sleep(0.01)
    assert fake_wandb.inits and fake_wandb.calls == []  # still starting
    opened = threading.Timer(0.3, fake_wandb.gate.set)  # W&B comes up only after close() began waiting
    opened.start()
    t = time.perf_counter()
    logger.close(0)
    waited = time.perf_counter() - t
    opened.join()
    assert waited >= 0.25  # close() waited for W&B ...
    kinds = [c[0] for c in fake_wandb.calls]  # ... and on its return W&B has everything, in order, and finished
    assert kinds == ["define_metric"] * 2 + ["log"] * 8 + ["summary"] * 2 + ["finish"]
    assert [c[1]["env_steps"] for c in fake_wandb.calls if c[0] == "log"] == [128 * k for k in range(1, 9)]
    assert fake_wandb.calls[-1] == ("finish", 0)


def test_wandb_is_never_imported_into_the_training_process(tmp_path, fake_wandb):
    """What made W&B cost ~1 s of every run: importing wandb and ``wandb.init`` in a thread here, holding the GIL
    against the training loop. The child process does both; this process only writes lines to it."""
    fake_wandb.gate.set()
    logger, _ = _logger(tmp_path)
    logger.log({"env_steps": 256})
    logger.close(0)
    assert [c[0] for c in fake_wandb.calls][-2:] == ["log", "finish"]
    assert "wandb" not in sys.modules and rlx_logging._HOST is not None and rlx_logging._HOST.proc.pid != os.getpid()


def test_a_wandb_process_that_dies_leaves_the_run_alone(tmp_path, fake_wandb):
    logger, out = _logger(tmp_path)  # W&B still starting (the gate is closed) ...
    logger.log({"env_steps": 256})
    assert rlx_logging._HOST is not None
    rlx_logging._HOST.proc.kill()  # ... when its process is killed
    t = time.perf_counter()
    logger.log({"env_steps": 512})
    logger.close(0)  # returns (no answer will come), with one warning
    assert time.perf_counter() - t < 10
    assert "the W&B process ended" in out.getvalue()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2


def test_ctrl_c_and_sigterm_do_not_end_the_wandb_process_under_a_run(tmp_path, fake_wandb):
    """Ctrl-C reaches the whole process group and a scheduler's SIGTERM every process of the job: the run stops
    gracefully and still logs its last lines, so its W&B process must outlive those signals."""
    fake_wandb.gate.set()
    logger, _ = _logger(tmp_path)
    logger.log({"env_steps": 256})
    assert rlx_logging._HOST is not None
    deadline = time.monotonic() + 30
    while not fake_wandb.calls and time.monotonic() < deadline:  # W&B is up (its handlers installed)
        time.sleep(0.01)
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(rlx_logging._HOST.proc.pid, sig)
    logger.log({"env_steps": 512})
    logger.close(0)
    assert [c[1]["env_steps"] for c in fake_wandb.calls if c[0] == "log"] == [256, 512]
    assert fake_wandb.calls[-1] == ("finish", 0)


def test_a_forked_child_does_not_wait_for_its_parents_wandb_runs_at_exit(tmp_path, fake_wandb):
    logger, _ = _logger(tmp_path)  # W&B still starting: the parent's close would wait
    pid = os.fork()
    if pid == 0:  # a vector env's worker, say: its exit runs the atexit hooks
        code = 0 if not rlx_logging._OPEN and rlx_logging._HOST is None else 1
        t = time.perf_counter()
        rlx_logging._finish_open_runs()
        os._exit(code if time.perf_counter() - t < 5 else 2)
    _, status = os.waitpid(pid, 0)
    fake_wandb.gate.set()
    logger.close(0)
    assert os.waitstatus_to_exitcode(status) == 0
