"""Who may write a run dir, and when: one process at a time, never over another run by accident.

- :class:`RunDirLock`: an OS-level ``flock`` on ``RUN_DIR/.rlx.lock``. The kernel drops it when the
  process ends, however it ends (kill -9 included), so a lock can never be stale; a second process
  (a second ``rlx resume``, or a ``train`` pointed at the same dir) gets a one-line error.
- :func:`claim_fresh`: a new run refuses a dir that already holds a run (it names ``rlx resume``),
  unless ``overwrite=true``, which first deletes the old run's files.
- :func:`unique_dir`: creates a new directory atomically, adding ``-1``, ``-2``... when the name is
  taken (two sweeps started in the same second get two sweep dirs).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from rlx.errors import UserError

LOCK_NAME = ".rlx.lock"
# What a run writes into its dir; ``overwrite=true`` deletes exactly these (Hydra's .hydra/ is rewritten by Hydra).
RUN_ARTIFACTS = ("config.yaml", "metrics.jsonl", "summary.json", "error.txt", "population.json", "checkpoints", "wandb", "tb",
                 "videos")
# Any of these means "a run lives here".
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints")


class RunDirTaken(UserError):
    """The dir holds another run, or another process writes it: nothing may be written there."""


def holds_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in RUN_MARKERS)


def ensure_writable_dir(path: Path, what: str) -> Path:
    """mkdir -p, then prove we can create a file there; a one-line UserError otherwise."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {path}: exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".rlx-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except UserError:
        raise
    except OSError as e:
        raise UserError(f"{what} {path}: not writable ({e.strerror or e}); choose another directory") from None
    return path


class RunDirLock:
    """Exclusive ownership of a run dir for the life of this process (or until :meth:`release`)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunDirLock":
        path = ensure_writable_dir(self.run_dir, "run dir") / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirTaken(f"{self.run_dir}: in use by another rlx process (pid {holder}); "
                                "one process at a time may write a run dir") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_fresh(run_dir: Path, overwrite: bool) -> None:
    """A new run in ``run_dir``: refuse one that holds a run, or clear it when ``overwrite``."""
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return
    if not overwrite:
        raise RunDirTaken(f"{run_dir} already holds a run; continue it with `rlx resume {run_dir}`, "
                        "or start over (deleting it) with overwrite=true")
    for name in RUN_ARTIFACTS:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for p in run_dir.glob(".summary.json.tmp"):
        p.unlink()


def unique_dir(path: Path) -> Path:
    """Create ``path`` (or ``path-1``, ``path-2``, ...) atomically and return the one created."""
    path = Path(path)
    ensure_writable_dir(path.parent, "directory")
    candidate, n = path, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")
