"""Errors a user can fix: reported as one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input (config key, value, env id, checkpoint...). The message is the whole report."""


class RunFault(RuntimeError):
    """A run stopped by a fault, not by bad input (NaN loss, disk full): one line, exit code 1.
    The message names the last good checkpoint (or says there is none yet)."""
