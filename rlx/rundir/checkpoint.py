"""Atomic checkpoints: write to a temp file in the same directory, fsync, then rename over the target.

A crash or SIGKILL mid-write leaves the previous file intact; readers only ever see complete files.
"""
from __future__ import annotations

import io
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlx import __version__
from rlx.errors import UserError

FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialize once in memory, then write atomically (one file replace, never a partial file)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, "rlx_version": __version__, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def shorten(text: str, limit: int = 120) -> str:
    """The first line of ``text`` in at most ``limit`` characters, never cut mid-word: whole sentences when
    the first one fits, else whole words and "…"."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if ". " in cut:
        return cut.rsplit(". ", 1)[0] + "."
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def step_checkpoints(directory: Path) -> list[Path]:
    """The periodic ``step_N.pt`` files in a checkpoints dir, the newest (largest N) first."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("step_*.pt") if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def step_checkpoint_hint(directory: Path) -> str:
    """For a missing or unusable ``last.pt`` in ``directory`` (RUN_DIR/checkpoints): the periodic checkpoints beside
    it and how ``rlx resume`` continues from one ("" when there are none). Copying a ``step_N.pt`` over ``last.pt``
    is all it takes: resume reads ``last.pt`` and drops the metrics logged after its step; a step file has no
    replay buffer, so an off-policy run refills its buffer first."""
    steps = step_checkpoints(directory)
    if not steps:
        return ""
    names = ", ".join(p.name for p in steps[:3]) + (f" (+{len(steps) - 3} more)" if len(steps) > 3 else "")
    run_dir = Path(directory).parent
    q = shlex.quote
    return (f"; periodic checkpoints beside it: {names}. To resume from the newest: cp {q(str(steps[0]))} "
            f"{q(str(Path(directory) / 'last.pt'))} && rlx resume {q(str(run_dir))} (it continues from step "
            f"{steps[0].stem.split('_')[1]}; an off-policy run refills its replay buffer first)")


def _hint_for(path: Path) -> str:
    return step_checkpoint_hint(path.parent) if path.name == "last.pt" else ""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", with_buffer: bool = True) -> dict[str, Any]:
    """Load a checkpoint file or a run dir (its best checkpoint, else last); UserError if unusable (for a
    last.pt with periodic checkpoints beside it, the message names them and how to resume from one).
    ``with_buffer``: also read the replay buffer file last.pt refers to (resuming needs it, evaluating not)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.pt", path / "checkpoints" / "last.pt", path / "best.pt", path / "last.pt"):
            if candidate.is_file():
                path = candidate
                break
        else:
            steps = step_checkpoints(path / "checkpoints")
            other = f"; it has {steps[0].name}: rlx eval {steps[0]}" if steps else ""
            raise UserError(f"{path}: no checkpoints/best.pt or checkpoints/last.pt in this run dir{other}")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file or run dir")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # any unpickling failure means the file is not a usable checkpoint
        raise UserError(f"{path}: not a readable rlx checkpoint ({type(e).__name__}: {shorten(str(e))})"
                        f"{_hint_for(path)}") from None
    if not isinstance(state, dict) or "format" not in state or "algo_name" not in state:
        raise UserError(f"{path}: not an rlx checkpoint (missing format/algo_name){_hint_for(path)}")
    if state["format"] != FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format {state['format']} (rlx {state.get('rlx_version', '?')}) is incompatible with "
            f"this rlx {__version__} (format {FORMAT_VERSION})"
        )
    state["path"] = str(path)
    if with_buffer:
        load_buffer(state)
    return state


BUFFER_PREFIX = "replay_buffer"


def _buffer_file(state: dict[str, Any]) -> Path | None:
    ref = (state.get("loop") or {}).get("buffer")
    return Path(ref["file"]) if isinstance(ref, dict) and "file" in ref else None


def load_buffer(state: dict[str, Any]) -> None:
    """Replace a checkpoint's reference to its replay-buffer file (``{"file": name}``) by the buffer itself."""
    name = _buffer_file(state)
    if name is None:
        return
    path = Path(state["path"]).parent / name
    try:
        state["loop"]["buffer"] = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{state['path']}: its replay buffer file {path.name} is missing"
                        f"{_hint_for(Path(state['path']))}") from None
    except Exception as e:
        raise UserError(f"{path}: not a readable replay buffer ({type(e).__name__}){_hint_for(Path(state['path']))}") from None


class Checkpointer:
    """last.pt (always the newest), best.pt (highest eval return), and up to ``keep`` periodic step_N.pt.

    An off-policy run's replay buffer (often most of the bytes) is stored once, in
    ``replay_buffer_<env step>.pt`` beside last.pt, which refers to it by name: written before last.pt
    (atomically), and the previous buffer file deleted only after last.pt no longer refers to it, so a
    crash at any point leaves a last.pt whose buffer file exists. Periodic and best checkpoints carry no
    buffer (they are for evaluation; resuming uses last.pt)."""

    def __init__(self, directory: Path, keep: int = 3):
        self.dir = Path(directory)
        self.keep = keep
        self.dir.mkdir(parents=True, exist_ok=True)

    def save_last(self, state: dict[str, Any], periodic: bool = False) -> None:
        loop = state.get("loop") or {}
        buffer = loop.get("buffer")
        if buffer is not None:
            name = f"{BUFFER_PREFIX}_{state['env_steps']}.pt"
            buf = io.BytesIO()
            torch.save(buffer, buf)
            atomic_write_bytes(self.dir / name, buf.getvalue())
            state = {**state, "loop": {**loop, "buffer": {"file": name}}}
        save_checkpoint(self.dir / "last.pt", state)
        current = _buffer_file(state)
        for old in self.dir.glob(f"{BUFFER_PREFIX}_*.pt"):
            if current is None or old.name != current.name:
                old.unlink(missing_ok=True)
        if periodic and self.keep > 0:
            lean = {**state, "loop": {**loop, "buffer": None}} if buffer is not None else state
            save_checkpoint(self.dir / f"step_{state['env_steps']}.pt", lean)
            self._prune()

    def save_best(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.dir / "best.pt", state)

    def _prune(self) -> None:
        periodic = sorted(self.dir.glob("step_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
        for old in periodic[: -self.keep]:
            old.unlink(missing_ok=True)
