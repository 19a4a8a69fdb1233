"""scripts/peers/bench_peers.py's table (issue 27): each peer against rlx eager and rlx compile=true, from
made-up runs (the real runs take minutes and venvs of their own: scripts/bench.py --peers)."""
from __future__ import annotations

from scripts.peers.bench_peers import TASKS, render


def _row(lib: str, sps: float, process_s: float) -> dict:
    run = {"seed": 0, "sps": sps, "learn_s": 5000 / sps, "process_s": process_s, "return": -150.0}
    return {"task": "sac_pendulum", "title": "SAC Pendulum-v1", "steps": 5000, "lib": lib, "runs": [run],
            "sps": sps, "learn_s": run["learn_s"], "process_s": process_s, "return": -150.0}


def test_a_peer_row_shows_its_ratio_to_rlx_eager_and_to_rlx_compiled():
    result = {"measured": "now", "machine": "test", "loadavg_start": [0.0], "loadavg_end": [0.0], "repeats": 1,
              "quick": False, "seed": 0, "command": "python scripts/bench.py --peers", "versions": {"sbx": "sbx-rl 0"},
              "rows": [_row("rlx", 50.0, 110.0), _row("rlx_compile", 75.0, 80.0), _row("sbx", 60.0, 100.0)]}
    table = render(result)
    assert "| SAC Pendulum-v1 | 5,000 | SBX | 60.0 | 83.3 | 100.0 | 0.83x / 1.25x | 0.91x / 1.25x | -150.0 |" in table
    assert "| SAC Pendulum-v1 | 5,000 | rlx, compile=true | 75.0 | 66.7 | 80.0 | 0.67x | 0.73x | -150.0 |" in table
    for task in ("sac_pendulum", "td3_pendulum", "ddpg_pendulum"):  # the off-policy tasks run both rlx variants
        assert "rlx_compile" in TASKS[task][5]
