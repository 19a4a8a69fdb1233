"""One logger for a run: metrics.jsonl, Weights & Biases (offline by default) and the progress display."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from rlx.config.schema import WandbConfig


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NaN/inf become null so every line of metrics.jsonl parses everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Off a TTY a plain progress line every 10% of the run, and at least this often (a long run is never silent).
PLAIN_PROGRESS_MAX_S = 30.0


class Logger:
    """Writes one JSON object per log interval to ``metrics.jsonl``, mirrors it to W&B, shows progress.

    On a TTY the progress is a rich bar (steps, steps/s, recent return, ETA); otherwise (CI logs,
    pipes) a plain line every 10% of the run and at least every 30 s, so logs stay readable.
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
        self.wandb_run = None
        self.wandb_id = wandb_id
        if wandb_cfg.mode != "disabled":
            self.wandb_run = self._init_wandb(config, wandb_cfg, wandb_id, name)
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

    def _init_wandb(self, config: dict, cfg: WandbConfig, wandb_id: str | None, name: str):
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        mode = cfg.mode
        if mode == "online" and not (os.environ.get("WANDB_API_KEY") or _wandb_logged_in()):
            self.message("rlx: warning: W&B online mode without WANDB_API_KEY or `wandb login`; logging offline instead")
            mode = "offline"

        def init(mode: Literal["offline", "online", "disabled"]):
            return wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags) or None,
                              name=name, config=config, dir=str(self.run_dir), mode=mode, id=wandb_id, resume="allow",
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
            try:
                run = init("offline")
            except Exception as e2:
                self.message(f"rlx: warning: W&B offline could not start either ({type(e2).__name__}); training without it")
                return None
        run.define_metric("env_steps")
        run.define_metric("*", step_metric="env_steps")
        self.wandb_id = run.id
        return run

    def log(self, metrics: dict[str, Any]) -> None:
        """Append one line; ``metrics`` must contain ``env_steps``."""
        line = {k: _clean(v) for k, v in metrics.items()}
        self.metrics_file.write(json.dumps(line) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log(line)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in line.items() if v is not None})

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
        self.console.print(text, highlight=False)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for k, v in values.items():
                if isinstance(v, (int, float, str)):
                    self.wandb_run.summary[k] = v

    def close(self, exit_code: int = 0) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.metrics_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None


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
