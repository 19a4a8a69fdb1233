"""Errors a user can fix: reported as one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input (config key, value, env id, checkpoint...). The message is the whole report."""


class RunFault(RuntimeError):
    """A run stopped by a fault, not by bad input (NaN loss, disk full): one line, exit code 1.
    The message names the last good checkpoint (or says there is none yet)."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-blank line of ``e``'s message, at most ``limit`` characters: a one-line reason for a
    warning or a failed summary, without the traceback or the rest of a long message (Ray's, W&B's)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else "")[:limit]
