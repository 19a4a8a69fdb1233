"""One logger for a run: metrics.jsonl, Weights & Biases (offline by default), RUN_DIR/rlx.log and the progress
display.

W&B is off the critical path: its runs live in a child process (:mod:`rlx.rundir.wandb_process`: importing
wandb and ``wandb.init`` are a second of Python, which in a thread here would hold the GIL against training;
the online mode may wait up to ``logger.wandb.init_timeout`` more), and what the run logs meanwhile (metrics
lines, the summary) is queued and handed to it in order. The W&B run id is chosen here, synchronously, so a
checkpoint written before W&B is up already names the run a resume continues. ``close()`` waits until W&B
has everything and has written its files.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from rlx.config.schema import WandbConfig
from rlx.errors import RunFault, UserError
from rlx.rundir.wandb_process import new_wandb_id

# Every message line of a run (start, warnings, stop and end lines, the error that ended it) also goes
# here, timestamped. The same file as Hydra's job log (hydra.job.name is "rlx"), in Hydra's line format.
RUN_LOG = "rlx.log"


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NaN/inf become null so every line of metrics.jsonl parses everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Off a TTY a plain progress line every 10% of the run, and at least this often (a long run is never silent).
PLAIN_PROGRESS_MAX_S = 30.0


def append_run_log(run_dir: str | Path, text: str) -> None:
    """Append ``text`` (one message, maybe several lines) to ``run_dir/rlx.log``, timestamped.

    Never raises: the console already has the message, and a full disk must not turn a message into a crash."""
    now = datetime.now()
    level = "ERROR" if text.startswith("rlx: error") else "WARNING" if text.startswith("rlx: warning") else "INFO"
    line = f"[{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d}][rlx][{level}] - {text}\n"
    try:
        with open(Path(run_dir) / RUN_LOG, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass


class Logger:
    """Writes one JSON object per log interval to ``metrics.jsonl``, mirrors it to W&B, shows progress.

    On a TTY the progress is a rich bar (steps, steps/s, recent return, ETA); otherwise (CI logs,
    pipes) a plain line every 10% of the run and at least every 30 s, so logs stay readable.
    Messages (:meth:`message`) go to the console and to ``RUN_DIR/rlx.log``.
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        wandb_cfg: WandbConfig,
        total_steps: int,
        progress: bool = True,
        wandb_id: str | None = None,
        console: Console | None = None,
        start_steps: int = 0,
        name: str = "rlx",
    ):
        self.run_dir = Path(run_dir)
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.tensorboard = None  # logger.tensorboard: the same lines as event files in RUN_DIR/tb
        if (config.get("logger") or {}).get("tensorboard", True):
            from rlx.rundir.tensorboard import TensorBoardSink

            self.tensorboard = TensorBoardSink(self.run_dir / "tb", start_steps)
        self.total_steps = total_steps
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.wandb_id = wandb_id  # the W&B run this run logs to (checkpoints keep it: a resume continues it)
        self._wandb: _WandbWorker | None = None
        if wandb_cfg.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_id = run_id = wandb_id or new_wandb_id()
            init = {"project": wandb_cfg.project, "entity": wandb_cfg.entity, "group": wandb_cfg.group,
                    "tags": list(wandb_cfg.tags), "name": name, "config": config, "dir": str(self.run_dir),
                    "mode": wandb_cfg.mode, "id": run_id, "init_timeout": wandb_cfg.init_timeout}
            self._wandb = _WandbWorker(init, self.message, self._wandb_id_changed)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._next_plain = start_steps
        self._last_plain = time.monotonic()
        self.show_progress = progress
        if progress and self.console.is_terminal:
            self._progress = Progress(  # fits 80 columns: name, bar, steps, rate, recent return, ETA
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=10),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]:>6.0f} sps  ret {task.fields[ret]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(name, total=total_steps, completed=start_steps, sps=0.0, ret="-")

    def _wandb_id_changed(self, run_id: str) -> None:
        """W&B's online start failed and its offline files have a new id: the checkpoints from now on name it."""
        self.wandb_id = run_id

    def log(self, metrics: dict[str, Any]) -> None:
        """Append one line; ``metrics`` must contain ``env_steps``."""
        line = {k: _clean(v) for k, v in metrics.items()}
        self.metrics_file.write(json.dumps(line) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log(line)
        if self._wandb is not None:
            self._wandb.put("log", {k: v for k, v in line.items() if v is not None})

    def progress(self, env_steps: int, sps: float, recent_return: float | None) -> None:
        ret = "-" if recent_return is None else f"{recent_return:.1f}"
        if self._progress is not None and self._task is not None:  # set together
            self._progress.update(self._task, completed=env_steps, sps=sps, ret=ret)
        elif self.show_progress and (env_steps >= self._next_plain or time.monotonic() - self._last_plain >= PLAIN_PROGRESS_MAX_S):
            pct = 100.0 * env_steps / self.total_steps
            self.console.print(f"step {env_steps:>10,}/{self.total_steps:,} ({pct:5.1f}%)  {sps:8.0f} steps/s  return {ret}",
                               highlight=False)
            self._next_plain = env_steps + max(1, self.total_steps // 10)
            self._last_plain = time.monotonic()

    def message(self, text: str) -> None:
        """One message of the run: to the console, and to ``RUN_DIR/rlx.log``."""
        self.console.print(text, highlight=False)
        append_run_log(self.run_dir, text)

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            self._wandb.put("summary", {k: v for k, v in values.items() if isinstance(v, (int, float, str))})

    def close(self, exit_code: int = 0) -> None:
        """End the run's logging; waits until W&B has every record (its files are complete).

        Called while an exception ends the run (``exit_code`` != 0), it records that error in rlx.log."""
        error = sys.exc_info()[1]
        if exit_code and error is not None:
            record_run_error(self.run_dir, error)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.metrics_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self._wandb is not None:
            self._wandb.close(exit_code)
            self._wandb = None


def record_run_error(run_dir: str | Path, error: BaseException) -> None:
    """The error that ended a run, into its rlx.log, once (a Logger closed by it already wrote it): rlx's own
    errors as the one line the CLI prints, anything else with its traceback."""
    if getattr(error, "_rlx_logged", False):
        return
    if isinstance(error, (RunFault, UserError)):
        text = f"rlx: error: {error}"
    else:
        text = f"rlx: error: {type(error).__name__}: {error}\n" + "".join(traceback.format_exception(error)).rstrip("\n")
    append_run_log(run_dir, text)
    try:
        error._rlx_logged = True  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions take attributes
        pass


_OPEN: weakref.WeakSet[_WandbWorker] = weakref.WeakSet()  # workers not closed yet: finished at exit
EXIT_FLUSH_S = 60.0  # at interpreter exit, how long an unclosed logger's W&B may take to write its files


class _WandbHost:
    """This process's W&B child process (:mod:`rlx.rundir.wandb_process`) and the two threads that talk to it.
    Both threads only wait on the pipes (no GIL held meanwhile): a writer, so that a W&B slow to read (an online
    start) never blocks the training thread on a full pipe, and a reader that hands the child's answers to the
    workers."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # rlx importable in the child wherever this process runs
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), root) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "rlx.rundir.wandb_process"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.workers: dict[str, _WandbWorker] = {}
        self.alive = True
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._write, name="rlx-wandb-write", daemon=True).start()
        threading.Thread(target=self._read, name="rlx-wandb-read", daemon=True).start()

    def send(self, line: str) -> None:
        self._lines.put(line)

    def stop(self, timeout: float | None = None) -> None:
        """End the child's input (it finishes what is still open) and wait for it."""
        self._lines.put(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, ValueError):  # the child is gone: _read tells the workers
            while (line := self._lines.get()) is not None:
                stdin.write(line + "\n")
                stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            worker = self.workers.get(msg["w"])
            if worker is not None:
                worker.answer(msg)
        self.alive = False
        code = self.proc.wait()
        for worker in list(self.workers.values()):  # the child ended with runs still open (killed, crashed)
            worker.answer({"kind": "message", "text": f"rlx: warning: the W&B process ended (exit code {code}); "
                                                      "training goes on without W&B"})
            worker.answer({"kind": "finished"})


_HOST: _WandbHost | None = None
_HOST_LOCK = threading.Lock()


def _wandb_host() -> _WandbHost:
    """The W&B child process, started on first use (and again if it died)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None or not _HOST.alive:
            _HOST = _WandbHost()
        return _HOST


def _stop_wandb_host(timeout: float | None = None) -> None:
    """End the W&B child process (tests: the next logger starts a fresh one, with the environment of then)."""
    global _HOST
    with _HOST_LOCK:
        host, _HOST = _HOST, None
    if host is not None:
        host.stop(timeout)


class _WandbWorker:
    """One W&B run, in the W&B child process: records go to it in the order they were put (each log line carries
    its ``env_steps``, W&B's x-axis), and the training thread never waits for it; ``close`` hands over the exit
    code and waits until the run has written its files."""

    def __init__(self, init: dict[str, Any], warn: Callable[[str], None], id_changed: Callable[[str], None]):
        self.key = new_wandb_id()
        self._warn, self._id_changed = warn, id_changed
        self._finished = threading.Event()
        self._closed = False
        self._host = _wandb_host()
        self._host.workers[self.key] = self
        _OPEN.add(self)
        self._send({"op": "start", "init": init})  # serialized now: the caller may change its config later

    def _send(self, msg: dict[str, Any]) -> None:
        self._host.send(json.dumps({"w": self.key, **msg}, default=str))

    def put(self, kind: Literal["log", "summary"], payload: dict[str, Any]) -> None:
        if not self._closed:
            self._send({"op": kind, "p": payload})

    def answer(self, msg: dict[str, Any]) -> None:
        """A line from the child for this run (in the host's reader thread)."""
        if msg["kind"] == "message":
            self._warn(msg["text"])
        elif msg["kind"] == "id":
            self._id_changed(msg["id"])
        elif msg["kind"] == "finished":
            self._host.workers.pop(self.key, None)
            self._finished.set()

    def close(self, exit_code: int = 0, timeout: float | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._send({"op": "finish", "code": exit_code})
        # a child that died before this run's "finished" answers nobody: stop waiting then
        while not self._finished.wait(1.0 if timeout is None else timeout) and timeout is None and self._host.alive:
            pass
        _OPEN.discard(self)


def _finish_open_runs() -> None:
    """At interpreter exit: a logger that was never closed still gets its W&B records written."""
    code = 1 if hasattr(sys, "last_value") else 0  # set when an uncaught exception ended the program
    for worker in list(_OPEN):
        worker.close(code, timeout=EXIT_FLUSH_S)


def _forget_wandb_in_fork() -> None:
    """A forked child (a vector env's worker, a launcher's) has neither the host's threads nor its runs:
    its exit must not wait for answers that go to the parent."""
    global _HOST, _HOST_LOCK
    _HOST, _HOST_LOCK = None, threading.Lock()  # the parent's lock may have been held by one of its threads
    _OPEN.clear()


atexit.register(_finish_open_runs)
os.register_at_fork(after_in_child=_forget_wandb_in_fork)


class RateMeter:
    """Steps per second over the time since the last reading (what the progress bar shows)."""

    def __init__(self, steps: int = 0):
        self.t, self.steps = time.perf_counter(), steps

    def read(self, steps: int) -> float:
        now = time.perf_counter()
        rate = (steps - self.steps) / max(now - self.t, 1e-9)
        self.t, self.steps = now, steps
        return rate
