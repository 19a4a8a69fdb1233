"""The one failure writer (issue 22): whatever ends a member's run early (a non-finite loss, an OS error
while writing, an env that raises, out of memory) leaves ``summary.json`` with status "failed", the one
line that says why and where the last good checkpoint is, and (for an unexpected exception) the
traceback in ``error.txt``; the caller prints that one line and exits 1."""
from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from typing import Any

from rlx.errors import RunFault, UserError
from rlx.rundir.logging import append_run_log

# OS-level faults of the run's own files: disk full, quota, read-only, I/O, permissions, file too large.
OS_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG)


def fault_text(e: BaseException, where: Path) -> str:
    """One line for the exception that ended a run."""
    if isinstance(e, RunFault):
        return str(e)
    if isinstance(e, OSError) and e.errno is not None:
        return f"{e.strerror or e} ({getattr(e, 'filename', None) or where})"
    if isinstance(e, MemoryError):
        return "out of memory (MemoryError)"
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    # a message that carries a traceback (an A3C worker's): its first line and the error it ended in
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(e).__name__}: {text}"


def is_fault(e: BaseException) -> bool:
    """Exceptions the driver turns into a failed run (bad input stays a UserError: exit 2)."""
    return isinstance(e, Exception) and not isinstance(e, UserError)


def failed_summary(error: str, session: Any) -> dict[str, Any]:
    return {"status": "failed", "error": error, "algo": session.algo_name, "env_id": session.config["env"]["id"],
            "seed": session.config["seed"], "env_steps": session.env_steps}


def record_fault(run_dir: Path, error: str, session: Any, traceback_text: str = "") -> str:
    """Summary with status failed (if the disk still lets us write it); the message names the last good
    checkpoint. Returns the message."""
    from rlx.train.run import write_summary

    last = run_dir / "checkpoints" / "last.pt"
    where = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint yet"
    message = f"{error}; {where}"
    with contextlib.suppress(OSError):
        write_summary(run_dir, failed_summary(message, session))
        if traceback_text:
            (run_dir / "error.txt").write_text(traceback_text)
    with contextlib.suppress(OSError):
        append_run_log(run_dir, f"rlx: error: {message}")
    return message
