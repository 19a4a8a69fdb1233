"""TensorBoard event files for a run (``RUN_DIR/tb/``): the metrics.jsonl lines as scalars, x = env steps.

A resumed run writes a new event file into the same directory with TensorBoard's ``purge_step`` set just
past the checkpoint, so TensorBoard drops what the killed process logged after the checkpoint (the steps
the resume redoes): one curve per tag, no duplicated steps, no split graphs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# metrics.jsonl key -> TensorBoard section ("eval/eval_return_mean", "train/policy_loss", ...)
TIME_KEYS = {"wall_s", "sps", "updates", "episodes"}


def tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key: its section, then the key exactly as in metrics.jsonl."""
    if key.startswith("eval_"):
        section = "eval"
    elif key.startswith("episode_"):
        section = "rollout"
    elif key in TIME_KEYS:
        section = "time"
    else:
        section = "train"
    return f"{section}/{key}"


class TensorBoardSink:
    """Writes every numeric value of a log line as a scalar at ``global_step = env_steps`` (of an eval line,
    its ``eval_*`` values)."""

    def __init__(self, log_dir: str | Path, start_steps: int = 0, flush_secs: int = 30):
        from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

        # purge_step: TensorBoard hides events at steps >= purge_step from earlier files of this dir.
        # Lines at the checkpoint's own step were logged before it was written, so they stay.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=start_steps + 1 if start_steps else None,
                                    flush_secs=flush_secs)

    def log(self, line: dict[str, Any]) -> None:
        step = int(line["env_steps"])
        is_eval = any(k.startswith("eval_") for k in line)
        for key, value in line.items():
            # an eval line's wall_s repeats the log line's step: one point per step and tag
            if (key == "env_steps" or (is_eval and not key.startswith("eval_")) or value is None or isinstance(value, bool)
                    or not isinstance(value, (int, float))):
                continue
            self.writer.add_scalar(tag(key), value, global_step=step)

    def close(self) -> None:
        self.writer.close()
