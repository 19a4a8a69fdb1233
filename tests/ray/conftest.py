"""A real local Ray cluster for tests/ray: `ray start --head --block` on free ports in its own temp dir,
reached by address (the code path of a multi-machine cluster), stopped afterwards even when a test fails.

`--block` keeps the head's processes children of the one `ray start` process we started, so teardown
signals only that process (never `ray stop`, which would stop every Ray cluster of this user).
"""
from __future__ import annotations

import shutil
import tempfile

import pytest

from scripts.local_ray import start_head, stop_head

pytest.importorskip("ray", reason="tests/ray need Ray: pip install -e '.[test]' (ray is in the test extra)")


@pytest.fixture(scope="session")
def ray_cluster():
    """The cluster's address ("127.0.0.1:PORT"); 2 CPUs, no dashboard."""
    import ray

    temp = tempfile.mkdtemp(prefix="rlxray", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 chars
    try:
        head, address = start_head(2, temp)
        try:
            yield address
        finally:
            if ray.is_initialized():
                ray.shutdown()
            stop_head(head)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
