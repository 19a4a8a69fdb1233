"""Who may write a run dir, and when: one process at a time, never over another run by accident.

- :class:`RunDirLock`: an OS-level ``flock`` on ``RUN_DIR/.rlx.lock``. The kernel drops it when the
  process ends, however it ends (kill -9 included), so a lock can never be stale; a second process
  (a second ``rlx resume``, or a ``train`` pointed at the same dir) gets a one-line error.
- :func:`claim_fresh`: a new run refuses a dir that already holds a run (it names ``rlx resume``),
  unless ``overwrite=true``, which first deletes the old run's files.
- :func:`unique_dir`: creates a new directory atomically, adding ``-1``, ``-2``... when the name is
  taken (two sweeps started in the same second get two sweep dirs).
- :func:`check_dir_path`, :func:`check_creatable_dir`, :func:`check_not_in_use`: the same checks as a
  one-line :class:`UserError`, before anything runs, and writing nothing (a dir checked this way and then
  never used leaves no trace: ``rlx train`` checks its run dir before Hydra creates it).
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
    return any(os.path.exists(Path(run_dir) / name) for name in RUN_MARKERS)


def _limits(path: Path) -> tuple[int, int]:
    """(longest file name, longest path) in bytes on the file system under ``path`` (255 and 4096 on Linux)."""
    base = Path(os.path.abspath(path))
    while not os.path.isdir(base) and base != base.parent:
        base = base.parent
    try:
        return int(os.pathconf(base, "PC_NAME_MAX")), int(os.pathconf(base, "PC_PATH_MAX"))
    except (OSError, ValueError):
        return 255, 4096


def check_dir_path(path: Path, label: str) -> None:
    """A path a directory can be created at: no component longer than the file system allows, no existing
    file (not a directory) on the way. ``label`` starts the message (``hydra.run.dir=PATH``). Touches nothing."""
    path = Path(path)
    name_max, path_max = _limits(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            shown = part if len(part) <= 24 else f"{part[:20]}..."
            raise UserError(f"{label}: the name '{shown}' is {size} bytes long; a file or directory name may have "
                            f"at most {name_max} bytes")
    size = len(os.fsencode(os.path.abspath(path)))
    if size >= path_max - 64:  # room for the files a run writes inside it
        raise UserError(f"{label}: the path is {size} bytes long; at most {path_max - 65} bytes are allowed")
    for p in (path, *path.parents):
        if os.path.isdir(p):  # os.path: False, not an error, where a parent is unreadable
            return
        if os.path.lexists(p):
            where = "exists" if p == path else f"{p} exists"
            raise UserError(f"{label}: {where} and is not a directory; choose another path")


def _probe_writable(path: Path, label: str) -> None:
    """Create and delete a file in the existing directory ``path``; a one-line UserError when that fails."""
    try:
        probe = path / f".rlx-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{label}: not writable ({e.strerror or e}); choose another directory") from None


def check_creatable_dir(path: Path, label: str) -> None:
    """What :func:`ensure_writable_dir` would find wrong with ``path``, found without creating it: a bad
    path (:func:`check_dir_path`), or a nearest existing parent where no file can be created."""
    path = Path(path)
    check_dir_path(path, label)
    base = path
    while not os.path.isdir(base) and base != base.parent:
        base = base.parent
    _probe_writable(base, label)


def ensure_writable_dir(path: Path, what: str) -> Path:
    """mkdir -p, then prove we can create a file there; a one-line UserError otherwise."""
    path = Path(path)
    label = f"{what} {path}"
    check_dir_path(path, label)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{label}: not writable ({e.strerror or e}); choose another directory") from None
    _probe_writable(path, label)
    return path


def _in_use(run_dir: Path, fd: int) -> RunDirTaken:
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    return RunDirTaken(f"{run_dir}: in use by another rlx process (pid {holder}); one process at a time may write a run dir")


def check_not_in_use(run_dir: Path) -> None:
    """RunDirTaken when another process holds ``run_dir``'s lock; writes nothing (no lock file is created)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return  # no lock file (or none readable): nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the descriptor just below
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(Path(run_dir), fd) from None
    finally:
        os.close(fd)


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
            taken = _in_use(self.run_dir, fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise taken from None
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
    check_dir_path(path, f"directory {path}")
    ensure_writable_dir(path.parent, "directory")
    candidate, n = path, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")
