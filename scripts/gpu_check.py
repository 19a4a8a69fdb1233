"""Every GPU path of rlx in one call, one JSON of figures (``scripts/gpu_check.sh`` runs this).

    scripts/gpu_check.sh                         # on a GPU machine: under 8 minutes, writes gpu_check.json
    scripts/gpu_check.sh --device cpu --quick    # the same paths, tiny, on CPU (CI: tests/cli/test_gpu_check.py)

Cases: plain runs (``rlx train``'s path: a population of one) of PPO CartPole and SAC Pendulum; populations of
K = 1, 64, 256 members of each (``hydra/launcher=population``'s path: seeds 0..K-1 trained as one process);
``compile=true`` vs ``false`` where the config has a top-level ``compile`` switch, and CUDA-graph capture where
a config switch for it exists (otherwise the JSON says ``skipped`` and why). Each case: wall (the whole
``train_job`` call, env construction and final evaluation included), training wall (summary ``wall_s``), env
steps/s over all members, the final eval returns (mean, min, max over members), peak GPU memory. A case that
fails is recorded with its error and the others still run. ``--budget-s`` (default 450) stops starting new
cases once spent, so the call ends in time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# algo, env, steps per member (full, quick)
TASKS = {"ppo": ("ppo", "cartpole", 50_000, 256), "sac": ("sac", "pendulum", 3_000, 120)}
KS_FULL, KS_QUICK = (1, 64, 256), (1, 2, 4)
QUIET = ["checkpoint.every=0", "logger.progress=false", "logger.wandb.mode=disabled", "logger.tensorboard=false"]


def _config_keys() -> set[str]:
    from rlx.config.compose import compose_config

    return {str(k) for k in compose_config(["algo=ppo", "env=cartpole"]).keys()}


def run_case(algo: str, env: str, steps: int, k: int, device: str, extra: list[str], quick: bool) -> dict[str, Any]:
    import torch

    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job

    evals = ["eval.every=0", "eval.episodes=2" if quick else "eval.episodes=5"]
    cfgs = [compose_config([f"algo={algo}", f"env={env}", f"total_steps={steps}", f"seed={i}", f"device={device}",
                            *evals, *QUIET, *extra]) for i in range(k)]
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = train_job(cfgs, [f"{tmp}/m{i}" for i in range(k)]) if k > 1 else train_job(cfgs, [f"{tmp}/run"])
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t
    train_s = min(o["wall_s"] for o in out if "wall_s" in o)
    returns = [float(o["eval_return_mean"]) for o in out if o.get("eval_return_mean") is not None]
    return {"algo": algo, "env": env, "k": k, "steps_per_member": steps, "overrides": extra, "wall_s": round(wall, 3),
            "train_s": round(train_s, 3), "steps_per_s": round(k * steps / max(train_s, 1e-9), 1),
            "return_mean": round(statistics.fmean(returns), 2) if returns else None,
            "return_min": round(min(returns), 2) if returns else None,
            "return_max": round(max(returns), 2) if returns else None,
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None, "status": "ok"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny runs and K = 1, 2, 4 (CI on CPU)")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no new case after this many seconds")
    args = ap.parse_args(argv)

    import torch

    t0 = time.perf_counter()
    keys = _config_keys()
    ks = KS_QUICK if args.quick else KS_FULL
    cases: list[tuple[str, str, int, list[str], str]] = []  # (name, algo, k, overrides, path)
    for algo in TASKS:
        cases.append((f"{algo}_plain", algo, 1, [], "plain"))
    for algo in TASKS:
        for k in ks:
            cases.append((f"{algo}_population_k{k}", algo, k, [], "population"))
    notes: dict[str, str] = {}
    if "compile" in keys:
        for algo in TASKS:
            for flag in ("false", "true"):
                cases.append((f"{algo}_compile_{flag}", algo, 1, [f"compile={flag}"], "compile"))
                cases.append((f"{algo}_population_k{ks[1]}_compile_{flag}", algo, ks[1], [f"compile={flag}"], "compile"))
    else:
        notes["compile"] = "skipped: the config has no top-level `compile` switch"
    graph_key = next((k for k in ("cuda_graphs", "cuda_graph", "cudagraphs") if k in keys), None)
    if graph_key is None:
        notes["cuda_graphs"] = "skipped: no CUDA-graph capture is implemented (no config switch for it)"
    elif not args.device.startswith("cuda"):
        notes["cuda_graphs"] = f"skipped: `{graph_key}` needs a CUDA device"
    else:
        for algo in TASKS:
            for flag in ("false", "true"):
                cases.append((f"{algo}_{graph_key}_{flag}", algo, 1, [f"{graph_key}={flag}"], "cuda_graphs"))

    results: dict[str, Any] = {}
    for name, algo, k, extra, path in cases:
        spent = time.perf_counter() - t0
        if spent > args.budget_s:
            results[name] = {"path": path, "k": k, "status": "skipped", "reason": f"budget spent ({spent:.0f} s)"}
            continue
        _, env, steps, quick_steps = TASKS[algo]
        try:
            results[name] = {"path": path, **run_case(algo, env, quick_steps if args.quick else steps, k, args.device,
                                                      extra, args.quick)}
        except Exception as e:  # one broken path does not hide the others' figures
            results[name] = {"path": path, "algo": algo, "k": k, "overrides": extra, "status": "error",
                             "error": f"{type(e).__name__}: {e}"[:500], "traceback": traceback.format_exc()[-2000:]}
        r = results[name]
        print(f"gpu_check: {name}: {r['status']}"
              + (f", {r['steps_per_s']:,.0f} steps/s, wall {r['wall_s']:.1f} s, return {r['return_mean']}"
                 if r["status"] == "ok" else f" ({r.get('error', r.get('reason'))})"), file=sys.stderr, flush=True)

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    report = {"device": args.device, "quick": args.quick, "gpu": gpu, "torch": torch.__version__,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "ks": list(ks),
              "total_wall_s": round(time.perf_counter() - t0, 1), "notes": notes, "cases": results,
              "ok": all(r["status"] != "error" for r in results.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"gpu_check: wrote {args.out} ({report['total_wall_s']} s, {'ok' if report['ok'] else 'with errors'})",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(0 if main()["ok"] else 1)
