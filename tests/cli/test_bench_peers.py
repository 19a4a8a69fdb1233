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


def test_a_run_shows_the_cores_it_kept_busy_and_one_core_pins_it(monkeypatch):
    """--one-core pins every process to CPU 0; the CPU seconds a process used are counted, so a library that
    runs threads of its own despite the one-thread flags (XLA) shows more than 1.00 cores in the table."""
    import sys

    import scripts.peers.bench_peers as bench_peers

    monkeypatch.setattr(bench_peers, "PIN_CPU", 0)
    busy = ("import os, time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"
            "print(sorted(os.sched_getaffinity(0)))")
    r, wall = bench_peers._timed([sys.executable, "-c", busy])
    assert r.returncode == 0 and r.stdout.strip() == "[0]"
    run = {"cpu_s": bench_peers.LAST_CPU_S, "process_s": wall}
    assert bench_peers.LAST_CPU_S >= 0.5 and 0.3 < bench_peers.cores_used(run) <= 1.05
    row = {**_row("sbx", 60.0, 100.0), "cores": 1.31}
    table = render({"measured": "now", "machine": "test", "loadavg_start": [0.0], "loadavg_end": [0.0], "repeats": 1,
                    "quick": False, "seed": 0, "command": "x", "versions": {"sbx": "sbx-rl 0"}, "pinned": bench_peers.pinned(),
                    "rows": [{**_row("rlx", 50.0, 110.0), "cores": 1.0}, row]})
    assert "| SAC Pendulum-v1 | 5,000 | SBX | 60.0 | 83.3 | 100.0 | 0.83x | 0.91x | -150.0 | 1.31 |" in table
    assert "pinned to CPU 0" in table
