#!/usr/bin/env python
"""rlx's in-process PBT vs Ray Tune's ``PopulationBasedTraining`` (issue 25), same task, budget and settings.

    python scripts/bench_pbt.py                  # 8 members x 50k steps, rlx / ray / rlx / ray
    python scripts/bench_pbt.py --repeats 1      # one run of each side
    python scripts/bench_pbt.py --quick          # 4 members x 8k steps, one run of each (a smoke check)

The task: PPO CartPole-v1 (RL-Zoo preset), members k = 0..K-1 with seed k and initial lr
``np.logspace(-5, -2, K)``, ``steps`` env steps per member, periodic deterministic evals every ``eval_every``
steps (``eval.episodes=5``), a PBT round every ``interval`` steps: bottom quantile 0.25 copies the top,
explore = resample (log-uniform in [1e-6, 1e-1], probability 0.25) or x0.8 / x1.2; the score is the last
periodic deterministic eval return (mode max).

- rlx: ONE process, ``train_job`` of the K configs with ``pbt.enabled=true`` (exploit = a row copy of the
  stacked state; envs keep running).
- Ray: ``ray.init(num_cpus=2)`` (a local cluster in the side's process), a function trainable per member
  that, per Ray iteration, trains ``interval`` env steps with rlx's ``train()`` in a fresh run dir starting
  from the previous iteration's checkpoint (``init_from=``; its own, or the one Ray's exploit restored from
  another trial via ``tune.get_checkpoint()``) and reports ``{"env_steps", "score"}`` with a
  ``tune.Checkpoint`` of that run's checkpoints; ``Tuner`` with ``PopulationBasedTraining(time_attr=
  "env_steps", perturbation_interval=interval, quantile_fraction=0.25, resample_probability=0.25,
  perturbation_factors=(1.2, 0.8), hyperparam_mutations={"lr": tune.loguniform(1e-6, 1e-1)})``, K trials
  (``grid_search`` over the initial lrs), ``max_concurrent_trials=2``.

What differs, by design of each tool (written into the results too): a Ray iteration is a new rlx run, so
its envs restart (episodes are cut at every iteration boundary) and the process-level cost of building a
run (config, networks, envs, evaluator, checkpoint I/O) is paid per member per iteration; rlx keeps the
envs running. The preset anneals lr and clip_eps linearly to 0 over the run; a Ray iteration cannot
continue a schedule across runs (``init_from`` counts env steps from 0), so the Ray trainable turns the
annealing off and trains each iteration at the schedule's value at the iteration's midpoint
(``lr * (1 - progress)``, ``clip_eps`` alike): the same mean lr per interval, as a step function.
Ray's PBT is asynchronous (its default ``synch=False``: a trial is ranked against the others' latest
results, and with 2 concurrent trials it pauses trials to let the others catch up); rlx's rounds are
synchronous. A Ray trial gets its seed from its trial index (k) plus 1000 x its iteration, so a trial that
copied another's weights does not replay its source's random streams (rlx keeps each member's streams).

Each side runs in its own fresh process (``--side``); the parent samples that process tree's memory every
0.5 s (the sum of PSS over its processes: Ray's GCS, raylet, workers; for rlx the one process) and the
side reports its own ``ru_maxrss``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
       "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
ENV.pop("RAY_ADDRESS", None)  # the Ray side starts its own local cluster
# ray.tune needs pyarrow and tensorboardX (ray[tune]), which rlx's test extra does not pin: a directory holding
# them (pip install --no-deps --target DIR pyarrow tensorboardX) goes on the Ray side's path
RAY_DEPS = os.environ.get("RLX_BENCH_RAY_DEPS", "/tmp/rlx_raytune")
QUIET = ["logger.wandb.mode=disabled", "logger.progress=false", "logger.tensorboard=false", "checkpoint.every=0",
         "torch_threads=1", "device=cpu"]
TASK = ["algo=ppo", "env=cartpole"]
LR_BOUNDS = (1e-6, 1e-1)
QUANTILE, RESAMPLE, PERTURB = 0.25, 0.25, (0.8, 1.2)
DIFFERENCES = [
    "Ray: each iteration is a new rlx run from the previous checkpoint (init_from): envs restart, so episodes "
    "are cut at every iteration boundary, and building a run (config, networks, envs, evaluator, checkpoint I/O) "
    "is paid per member per iteration; rlx keeps the envs running and exploits by a row copy in memory",
    "Ray: the preset's linear lr/clip_eps annealing cannot continue across runs, so each iteration trains at the "
    "schedule's value at the iteration's midpoint (same mean lr per interval, as a step function); rlx anneals "
    "continuously",
    "Ray's PBT is asynchronous (synch=False, its default; 2 trials at a time, others paused to catch up); "
    "rlx's rounds are synchronous",
    "Ray: a trial's seed is k + 1000 x iteration (a copy does not replay its source's streams); rlx keeps each "
    "member's own streams",
]


def lrs(members: int) -> list[float]:
    import numpy as np

    return [float(f"{v:.3g}") for v in np.logspace(-5, -2, members)]


def pbt_overrides(interval: int) -> list[str]:
    return ["pbt.enabled=true", f"pbt.interval={interval}", f"pbt.quantile={QUANTILE}",
            f"pbt.resample_probability={RESAMPLE}", f"pbt.perturb=[{PERTURB[0]},{PERTURB[1]}]", "pbt.keys=[algo.lr]",
            f"+pbt.bounds={{algo.lr:[{LR_BOUNDS[0]},{LR_BOUNDS[1]}]}}"]


# -- the sides (each in its own process) --------------------------------------------------------------------
def side_rlx(a: argparse.Namespace, work: Path) -> dict:
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job

    cfgs = [compose_config([*TASK, f"total_steps={a.steps}", f"seed={k}", f"algo.lr={lr}", f"eval.every={a.eval_every}",
                            f"eval.episodes={a.episodes}", *QUIET, *pbt_overrides(a.interval)])
            for k, lr in enumerate(lrs(a.members))]
    t = time.perf_counter()
    out = train_job(cfgs, [work / f"m{k}" for k in range(a.members)])
    wall = time.perf_counter() - t
    rounds = [json.loads(ln) for ln in (work / "pbt.jsonl").read_text().splitlines() if ln.strip()]
    return {"wall_s": wall, "finals": [o["eval_return_mean"] for o in out],
            "status": [o["status"] for o in out], "rounds": len(rounds),
            "exploits": sum(len(r["exploits"]) for r in rounds),
            "final_lr": [rounds[-1]["hyperparameters"][f"m{k}"]["algo.lr"] for k in range(a.members)] if rounds else None}


def _trainable(config: dict) -> None:
    """One Ray trial = one member: per iteration, ``interval`` env steps of rlx's train() from the last checkpoint."""
    from ray import tune

    from rlx.config.compose import compose_config
    from rlx.train.driver import train

    ctx = tune.get_context()
    k = int(ctx.get_trial_id().rsplit("_", 1)[-1])  # the grid index: member k (initial lr k, seed k)
    interval, total, every, episodes = config["interval"], config["total"], config["eval_every"], config["episodes"]
    trial_dir = Path(ctx.get_trial_dir())
    env_steps, init, source = 0, None, None
    restored = tune.get_checkpoint()
    while True:
        with (restored.as_directory() if restored is not None else _nothing()) as ckpt:
            if ckpt is not None:
                progress = json.loads(Path(ckpt, "progress.json").read_text())
                env_steps, source, init = progress["env_steps"], progress["member"], str(Path(ckpt, "last.pt"))
            if env_steps >= total:
                return
            it = env_steps // interval
            mid = min(1.0, (env_steps + interval / 2) / total)  # the preset's annealing at this iteration's midpoint
            run_dir = trial_dir / f"it{it}_{time.monotonic_ns()}"
            cfg = compose_config([*TASK, f"total_steps={interval}", f"seed={k + 1000 * it}", f"algo.lr={config['lr'] * (1 - mid)!r}",
                                  f"algo.clip_eps={0.2 * (1 - mid)!r}", "algo.anneal_lr=false", "algo.anneal_clip=false",
                                  f"eval.every={every}", f"eval.episodes={episodes}", *QUIET,
                                  *([f"init_from='{init}'"] if init else [])])
            summary = train(cfg, run_dir)
        env_steps += interval
        Path(run_dir, "checkpoints", "progress.json").write_text(json.dumps({"env_steps": env_steps, "member": k}))
        tune.report({"env_steps": env_steps, "score": summary["eval_return_mean"], "member": k, "lr": config["lr"],
                     "restored_from": -1 if source is None else source},
                    checkpoint=tune.Checkpoint.from_directory(str(Path(run_dir, "checkpoints"))))
        restored = None
        init, source = str(Path(run_dir, "checkpoints", "last.pt")), k


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def side_ray(a: argparse.Namespace, work: Path) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    t = time.perf_counter()
    path = os.environ.get("PYTHONPATH", str(REPO))
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="rp", dir="/tmp"), runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        scheduler = PopulationBasedTraining(
            time_attr="env_steps", metric="score", mode="max", perturbation_interval=a.interval,
            quantile_fraction=QUANTILE, resample_probability=RESAMPLE, perturbation_factors=(PERTURB[1], PERTURB[0]),
            hyperparam_mutations={"lr": tune.loguniform(*LR_BOUNDS)})
        tuner = tune.Tuner(
            _trainable,
            param_space={"lr": tune.grid_search(lrs(a.members)), "interval": a.interval, "total": a.steps,
                         "eval_every": a.eval_every, "episodes": a.episodes},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, max_concurrent_trials=2,
                                        trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
            run_config=tune.RunConfig(name="pbt", storage_path=str(work / "ray_results"), verbose=0))
        grid = tuner.fit()
        wall = time.perf_counter() - t
        finals: dict[int, float] = {}
        final_lr: dict[int, float] = {}
        errors = [str(r.error)[:300] for r in grid if r.error]
        for r in grid:
            if r.metrics and "member" in r.metrics:
                finals[int(r.metrics["member"])] = float(r.metrics["score"])
                final_lr[int(r.metrics["member"])] = float(r.metrics["lr"])
        exp = work / "ray_results" / "pbt"
        # Ray's PBT writes one line per exploit; a rlx run per iteration started, those Ray discarded included
        exploits = len((exp / "pbt_global.txt").read_text().splitlines()) if (exp / "pbt_global.txt").is_file() else 0
        iterations = len(list(exp.glob("trial_*/it*")))
    finally:
        ray.shutdown()
    if errors:
        raise RuntimeError(f"{len(errors)} Ray trials failed; the first: {errors[0]}")
    return {"wall_s": wall, "finals": [finals.get(k, math.nan) for k in range(a.members)], "errors": errors,
            "iterations": iterations, "exploits": exploits, "final_lr": [final_lr.get(k) for k in range(a.members)]}


def run_side(side: str, a: argparse.Namespace) -> None:
    import resource

    work = Path(tempfile.mkdtemp(prefix=f"pbt_{side}_"))
    out = (side_rlx if side == "rlx" else side_ray)(a, work)
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["ru_maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["work_dir"] = str(work)
    print("RESULT " + json.dumps(out), flush=True)


# -- the parent: alternate the sides, sample memory, write the tables -------------------------------------------
def _tree_memory(pid: int) -> tuple[float, float]:
    """(sum of PSS, sum of RSS) in MB over process ``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    pss = rss = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Pss:", "Rss:")):
                    kb = int(line.split()[1])
                    pss, rss = (pss + kb, rss) if line.startswith("Pss:") else (pss, rss + kb)
        except OSError:
            continue
    return pss / 1024, rss / 1024


def measure(side: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--members", str(a.members), "--steps", str(a.steps),
           "--interval", str(a.interval), "--eval-every", str(a.eval_every), "--episodes", str(a.episodes)]
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryDirectory(prefix="rlxbenchhome") as home:
        env = {**ENV, "PYTHONPATH": f"{REPO}{os.pathsep}{RAY_DEPS}"} if side == "ray" and Path(RAY_DEPS).is_dir() else ENV
        # Ray's local instance writes ~/.ray/auth_token, after which a `ray start` head (tests/ray, the
        # ray_cluster launcher) refuses this user's clients (InvalidAuthToken): the Ray side gets its own HOME
        env = {**env, "HOME": home} if side == "ray" else env
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        peak = [0.0, 0.0]
        load0 = os.getloadavg()[0]
        while p.poll() is None:
            pss, rss = _tree_memory(p.pid)
            peak = [max(peak[0], pss), max(peak[1], rss)]
            time.sleep(0.5)
        log.seek(0)
        text = log.read()
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"the {side} side failed (exit {p.returncode}):\n{text[-3000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out.update(side=side, peak_pss_mb=round(peak[0], 1), peak_rss_sum_mb=round(peak[1], 1),
               median=statistics.median(out["finals"]), load_1min_before=load0, load_1min_after=os.getloadavg()[0])
    return out


def _fmt(xs: list[float]) -> str:
    return ", ".join("nan" if x != x else f"{x:g}" for x in xs)


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = [
        f"PPO CartPole-v1 (RL-Zoo preset), {s['members']} members (seed k, lr log-spaced 1e-5..1e-2), {s['steps']:,} env "
        f"steps each, eval every {s['eval_every']:,} ({s['episodes']} episodes), PBT interval {s['interval']:,}, quantile "
        f"{QUANTILE}, resample {RESAMPLE}, perturb x{PERTURB[0]}/x{PERTURB[1]}, lr bounds [1e-6, 1e-1]. Machine: "
        f"{res['machine']['cpus']} CPUs ({res['machine']['platform']}), shared with other jobs (1-min load before each run "
        "in the table). Peak memory: the sum of PSS over the side's process tree, sampled every 0.5 s "
        "(RSS sum and the driver's ru_maxrss in the JSON).",
        "",
        "| run | side | wall s | peak memory MB | median final eval | per-member final eval | exploits | rlx runs | load |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for i, r in enumerate(res["runs"]):
        lines.append(f"| {i + 1} | {'rlx PBT (1 process)' if r['side'] == 'rlx' else 'Ray Tune PBT'} | {r['wall_s']:.1f} | "
                     f"{r['peak_pss_mb']:.0f} | {r['median']:g} | {_fmt(r['finals'])} | {r['exploits']} | {r.get('iterations', 1)} | "
                     f"{r['load_1min_before']:.2f} |")
    sm = res["summary"]
    lines += ["", f"Median wall: rlx {sm['rlx_wall_s']:.1f} s, Ray {sm['ray_wall_s']:.1f} s: **Ray / rlx = "
              f"{sm['wall_ratio_ray_over_rlx']:.1f}x**. Median of the members' median final eval: rlx {sm['rlx_median']:g}, "
              f"Ray {sm['ray_median']:g}. Peak memory: rlx {sm['rlx_peak_mb']:.0f} MB, Ray {sm['ray_peak_mb']:.0f} MB.",
              "", "What differs:", *[f"- {d}" for d in DIFFERENCES]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 members x 8k steps (interval 4k, eval every 2k), one run each")
    ap.add_argument("--members", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--interval", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--repeats", type=int, help="alternating rlx/ray pairs (default 2; --quick: 1)")
    ap.add_argument("--sides", default="rlx,ray", help="rlx,ray (default) or one of them")
    ap.add_argument("--json", type=Path, help="default benchmarks/pbt_vs_ray.json (none with --quick)")
    ap.add_argument("--markdown", type=Path, help="default benchmarks/pbt_vs_ray.md (none with --quick)")
    ap.add_argument("--side", choices=("rlx", "ray"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    q = a.quick
    a.members = a.members or (4 if q else 8)
    a.steps = a.steps or (8_000 if q else 50_000)
    a.interval = a.interval or (4_000 if q else 10_000)
    a.eval_every = a.eval_every or (2_000 if q else 5_000)
    if a.side:
        run_side(a.side, a)
        return
    repeats = a.repeats or (1 if q else 2)
    if not q:
        a.json = a.json or REPO / "benchmarks" / "pbt_vs_ray.json"
        a.markdown = a.markdown or REPO / "benchmarks" / "pbt_vs_ray.md"
    sides = a.sides.split(",")
    runs: list[dict] = []
    for rep in range(repeats):
        for side in sides:
            print(f"[{rep + 1}/{repeats}] {side} ... (load {os.getloadavg()[0]:.2f})", flush=True)
            r = measure(side, a)
            print(f"  {side}: wall {r['wall_s']:.1f} s, peak PSS {r['peak_pss_mb']:.0f} MB (RSS sum {r['peak_rss_sum_mb']:.0f}, "
                  f"driver ru_maxrss {r['ru_maxrss_mb']:.0f}), median final {r['median']:g}, finals [{_fmt(r['finals'])}], "
                  f"exploits {r['exploits']}", flush=True)
            runs.append(r)
            res = results(a, runs)  # written after every run: a stopped benchmark keeps what it measured
            write(a, res)
    print(markdown(res))


def results(a: argparse.Namespace, runs: list[dict]) -> dict:
    import ray
    import torch

    def med(side: str, key: str) -> float:
        xs = [r[key] for r in runs if r["side"] == side]
        return statistics.median(xs) if xs else math.nan

    summary = {f"{s}_{k}": med(s, key) for s in ("rlx", "ray")
               for k, key in (("wall_s", "wall_s"), ("median", "median"), ("peak_mb", "peak_pss_mb"))}
    summary["wall_ratio_ray_over_rlx"] = summary["ray_wall_s"] / summary["rlx_wall_s"]
    return {"settings": {"members": a.members, "steps": a.steps, "interval": a.interval, "eval_every": a.eval_every,
                         "episodes": a.episodes, "lrs": lrs(a.members), "quantile": QUANTILE, "resample_probability": RESAMPLE,
                         "perturb": list(PERTURB), "lr_bounds": list(LR_BOUNDS), "ray_max_concurrent_trials": 2,
                         "ray_num_cpus": 2},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "ray": ray.__version__},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "runs": runs, "summary": summary, "differences": DIFFERENCES}


def write(a: argparse.Namespace, res: dict) -> None:
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text("# rlx PBT vs Ray Tune PBT (issue 25)\n\n`python scripts/bench_pbt.py`\n\n" + markdown(res))


if __name__ == "__main__":
    main()
