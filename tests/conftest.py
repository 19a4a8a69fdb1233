import os
import subprocess
import sys

import pytest

# Tests never talk to W&B servers; offline runs write files only.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

FAST = ["logger.progress=false", "torch_threads=1"]


def run_cli(*args: str, cwd=None, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    """Run the installed `rlx` entry point exactly as a user would (python -m keeps the same venv)."""
    return subprocess.run(
        [sys.executable, "-c", "from rlx.app.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli():
    return run_cli
