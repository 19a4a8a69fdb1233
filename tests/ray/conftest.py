"""A real local Ray cluster for tests/ray: `ray start --head --block` on free ports in its own temp dir,
reached by address (the code path of a multi-machine cluster), stopped afterwards even when a test fails.

`--block` keeps the head's processes children of the one `ray start` process we started, so teardown
signals only that process (never `ray stop`, which would stop every Ray cluster of this user).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="tests/ray need Ray: pip install -e '.[test]' (ray is in the test extra)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else shutil.which("ray") or "ray"


@pytest.fixture(scope="session")
def ray_cluster():
    """The cluster's address ("127.0.0.1:PORT"); 2 CPUs, no dashboard."""
    import ray

    port = free_port()
    temp = tempfile.mkdtemp(prefix="rlxray", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 chars
    ports = {"--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
             "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(), "--object-manager-port": free_port()}
    cmd = [_ray_cli(), "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0", f"--port={port}",
           "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
           "--object-store-memory=100000000", "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
    log = open(Path(temp) / "ray-start.log", "w")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.poll() is not None:
                raise RuntimeError(f"ray start exited {head.returncode}:\n{(Path(temp) / 'ray-start.log').read_text()[-3000:]}")
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                ok = ray.cluster_resources().get("CPU") == 2
                ray.shutdown()
                if ok:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # --block: ray start stops the head's processes on SIGTERM
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
