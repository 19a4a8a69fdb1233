import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

# Tests never talk to W&B servers; offline runs write files only.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# compile=true tests: inductor's kernel cache in a fresh dir per session (not ~/.cache/rlx; the same cost every run)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="rlx-inductor-"))

FAST = ["logger.progress=false", "torch_threads=1"]


def run_cli(*args: str, cwd=None, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    """Run the installed `rlx` entry point exactly as a user would (python -m keeps the same venv)."""
    return subprocess.run(
        [sys.executable, "-c", "from rlx.app.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def run_cli_until(path, text: str, *args: str, cwd=None, sig: int = signal.SIGTERM, timeout: float = 300) -> subprocess.Popen:
    """Start `rlx ARGS`, wait until ``path`` exists and contains ``text``, then send it ``sig``; the process (its
    stderr piped) is returned for the caller to ``communicate()`` with."""
    p = subprocess.Popen([sys.executable, "-c", "from rlx.app.cli import main; main()", *args],
                         cwd=cwd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not (path.is_file() and text in path.read_text()):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1]
        time.sleep(0.05)
    p.send_signal(sig)
    return p


@pytest.fixture
def cli():
    return run_cli
