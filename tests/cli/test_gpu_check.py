"""scripts/gpu_check.sh keeps working without a GPU: ``--device cpu --quick`` runs every path tiny and writes the JSON."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_quick_on_cpu_writes_every_case(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick", "--out", str(out)],
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                                            "HOME": str(tmp_path)}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {"device", "quick", "gpu", "torch", "ks", "total_wall_s", "notes", "cases", "ok"} <= report.keys()
    assert report["device"] == "cpu" and report["quick"] and report["ok"]
    names = {f"{a}_plain" for a in ("ppo", "sac")} | {f"{a}_population_k{k}" for a in ("ppo", "sac") for k in report["ks"]}
    assert names <= report["cases"].keys()
    for name in names:
        case = report["cases"][name]
        assert case["status"] == "ok", case
        assert {"wall_s", "train_s", "steps_per_s", "return_mean", "return_min", "return_max", "k"} <= case.keys()
        assert case["steps_per_s"] > 0 and case["return_mean"] is not None
    # compile / CUDA graphs: measured both ways where the switch exists, otherwise a note says why not
    for part in ("compile", "cuda_graphs"):
        assert part in report["notes"] or any(c["path"] == part for c in report["cases"].values())
