"""scripts/bench_pbt.py end to end, tiny (issue 25): both sides run and the JSON has the keys the README table uses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS = os.environ.get("RLX_BENCH_RAY_DEPS", "/tmp/rlx_raytune")


@pytest.mark.slow
def test_bench_pbt_quick_writes_both_sides(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import ray.tune"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{DEPS}"})
    if probe.returncode:
        pytest.skip("ray.tune needs pyarrow and tensorboardX (pip install --no-deps --target $RLX_BENCH_RAY_DEPS ...)")
    out = tmp_path / "pbt.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_pbt.py"), "--quick", "--members", "4", "--steps", "2000",
                        "--interval", "1000", "--eval-every", "1000", "--json", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [run["side"] for run in res["runs"]] == ["rlx", "ray"]
    for run in res["runs"]:
        assert len(run["finals"]) == 4 and run["wall_s"] > 0 and run["peak_pss_mb"] > 0
    assert {"rlx_wall_s", "ray_wall_s", "wall_ratio_ray_over_rlx", "rlx_median", "ray_median"} <= set(res["summary"])
