"""One logger for a run: metrics.jsonl, Weights & Biases (offline by default), RUN_DIR/rlx.log and the progress
display.

W&B is off the critical path: its run starts in a background thread (importing wandb and ``wandb.init``
take seconds, the online mode up to ``logger.wandb.init_timeout`` more), and what the run logs meanwhile
(metrics lines, the summary) is queued and handed to it in order once it is up. The W&B run id is chosen
here, synchronously, so a checkpoint written before W&B is up already names the run a resume continues.
``close()`` waits until W&B has everything and has written its files.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import json
import math
import os
import queue
import secrets
import string
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


def new_wandb_id() -> str:
    """A fresh W&B run id, as ``wandb`` makes them (8 base-36 digits), without importing wandb."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


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
            config = copy.deepcopy(config)  # W&B reads it later, in its thread
            self._wandb = _WandbWorker(lambda: self._init_wandb(config, wandb_cfg, run_id, name), self.message)
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

    @property
    def wandb_run(self) -> Any:
        """The W&B run once it is up (None before, and without W&B)."""
        return self._wandb.run if self._wandb is not None else None

    def _init_wandb(self, config: dict, cfg: WandbConfig, wandb_id: str, name: str) -> Any:
        """Start the W&B run (in the W&B thread); None if it cannot start at all."""
        import wandb

        mode = cfg.mode
        if mode == "online" and not (os.environ.get("WANDB_API_KEY") or _wandb_logged_in()):
            self.message("rlx: warning: W&B online mode without WANDB_API_KEY or `wandb login`; logging offline instead")
            mode = "offline"

        def init(mode: Literal["offline", "online", "disabled"], run_id: str = wandb_id):
            return wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags) or None,
                              name=name, config=config, dir=str(self.run_dir), mode=mode, id=run_id, resume="allow",
                              reinit="create_new",  # a population's members: K live runs in one process
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                      init_timeout=cfg.init_timeout))

        # W&B must never stop or stall training: a bounded wait for the server (init_timeout), then
        # offline files in the run dir (`wandb sync` them later); if even that fails, no W&B at all.
        try:
            run = init(mode)
        except Exception as e:
            if mode != "online":
                self.message(f"rlx: warning: W&B could not start ({type(e).__name__}: {_first_line(e)}); training without it")
                return None
            self.message(f"rlx: warning: W&B online unreachable within {cfg.init_timeout:g}s "
                         f"({type(e).__name__}: {_first_line(e)}); logging offline into {self.run_dir / 'wandb'} instead")
            try:  # under a new id: W&B keeps the failed online run's id "in use" in this process
                run = init("offline", new_wandb_id())
                self.wandb_id = run.id  # the checkpoints from now on name the run that has the files
            except Exception as e2:
                self.message(f"rlx: warning: W&B offline could not start either ({type(e2).__name__}); training without it")
                return None
        run.define_metric("env_steps")
        run.define_metric("*", step_metric="env_steps")
        return run

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


# wandb.init is not made for K threads at once (a population's members): one start or finish at a time.
_WANDB_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[_WandbWorker] = weakref.WeakSet()  # workers not closed yet: finished at exit
EXIT_FLUSH_S = 60.0  # at interpreter exit, how long an unclosed logger's W&B may take to write its files


class _WandbWorker:
    """One W&B run fed from a thread: ``start()`` (``wandb.init``) runs there, and every record put meanwhile
    waits in a queue, so the training thread never waits for W&B. Records reach the run in the order they were
    put (each log line carries its ``env_steps``, W&B's x-axis); ``close`` hands over the exit code and waits."""

    def __init__(self, start: Callable[[], Any], warn: Callable[[str], None]):
        self.run: Any = None
        self._start, self._warn = start, warn
        self._records: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="rlx-wandb", daemon=True)
        _OPEN.add(self)
        self._thread.start()

    def put(self, kind: Literal["log", "summary"], payload: dict[str, Any]) -> None:
        if not self._closed:
            self._records.put((kind, payload))

    def close(self, exit_code: int = 0, timeout: float | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._records.put(("finish", exit_code))
        self._thread.join(timeout)
        _OPEN.discard(self)

    def _work(self) -> None:
        with _WANDB_LOCK:
            try:
                run = self._start()  # reports its own wandb.init failures (and returns None)
            except Exception as e:  # anything else (wandb not importable, ...): no W&B, training goes on
                self._warn(f"rlx: warning: W&B could not start ({type(e).__name__}: {_first_line(e)}); training without it")
                run = None
            if run is not None:  # after W&B's own exit hook (atexit runs last-registered first)
                atexit.unregister(_finish_open_runs)
                atexit.register(_finish_open_runs)
        self.run = run
        broken = None
        while True:
            kind, payload = self._records.get()
            if kind == "finish":
                break
            if run is None:
                continue  # W&B did not start: records are dropped (metrics.jsonl has them)
            try:
                if kind == "log":
                    run.log(payload)
                else:
                    for k, v in payload.items():
                        run.summary[k] = v
            except Exception as e:  # a broken W&B run never stops training; metrics.jsonl has every line
                self._warn(f"rlx: warning: W&B stopped logging ({type(e).__name__}: {_first_line(e)}); "
                           "training goes on without it")
                broken, run = run, None
        last, code = (run, payload) if run is not None else (broken, 1)
        if last is not None:
            with _WANDB_LOCK, contextlib.suppress(Exception):
                last.finish(exit_code=code)


def _finish_open_runs() -> None:
    """At interpreter exit: a logger that was never closed still gets its W&B records written."""
    code = 1 if hasattr(sys, "last_value") else 0  # set when an uncaught exception ended the program
    for worker in list(_OPEN):
        worker.close(code, timeout=EXIT_FLUSH_S)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:160]


def _wandb_logged_in() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class RateMeter:
    """Steps per second over the time since the last reading (what the progress bar shows)."""

    def __init__(self, steps: int = 0):
        self.t, self.steps = time.perf_counter(), steps

    def read(self, steps: int) -> float:
        now = time.perf_counter()
        rate = (steps - self.steps) / max(now - self.t, 1e-9)
        self.t, self.steps = now, steps
        return rate
