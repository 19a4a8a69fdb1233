"""Errors a user can fix: reported as one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input (config key, value, env id, checkpoint...). The message is the whole report."""
