"""A local Ray head for tests/ray and the benchmarks: ``ray start --head --block`` on free ports in its own
temp dir, reached by address (the code path of a multi-machine cluster), stopped by signalling that one
process.

``--block`` keeps the head's processes children of the one ``ray start`` process started here, so
:func:`stop_head` signals only that process (never ``ray stop``, which would stop every Ray cluster of
this user).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else shutil.which("ray") or "ray"


def start_head(num_cpus: int, temp: str) -> tuple[subprocess.Popen, str]:
    """Start the head (``num_cpus`` CPUs, no GPUs, no dashboard) with its files in ``temp`` (keep that path
    short: Ray's unix socket paths must stay < 108 chars); return it and its address once it answers with
    all its CPUs. A head that exits or does not answer within 90 s is stopped and a RuntimeError raised."""
    import ray

    port = free_port()
    ports = {"--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
             "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(), "--object-manager-port": free_port()}
    cmd = [_ray_cli(), "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0", f"--port={port}",
           "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
           "--object-store-memory=100000000", "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
    log_path = Path(temp) / "ray-start.log"
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if head.poll() is not None:
                raise RuntimeError(f"ray start exited {head.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                ok = ray.cluster_resources().get("CPU") == num_cpus
                ray.shutdown()
                if ok:
                    return head, address
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
    except BaseException:
        stop_head(head)
        raise


def stop_head(head: subprocess.Popen) -> None:
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # --block: ray start stops the head's processes on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
