"""rlx vs Stable-Baselines3, SBX and rejax, side by side in one invocation (``scripts/bench.py --peers``).

Each peer lives in its own venv under ``~/.cache/rlx-peers/<peer>`` (``$RLX_PEERS_CACHE``), created here
on first use from the package registries, so their torch/jax never enter rlx's venv:

    sb3    pip install torch==2.13.0 stable-baselines3
    sbx    pip install torch==2.13.0 sbx-rl            (jax, flax, optax come with it)
    rejax  pip install rejax 'gymnax<1'                (rejax 0.1.x needs gymnax 0.0.x)
    sb3c   pip install torch==2.13.0 stable-baselines3 sb3-contrib   (``scripts/bench.py --recurrent``, issue 26)

(torch first, pinned to rlx's version: where the CPU wheel lies in pip's cache or find-links, no CUDA
wheels are fetched.) Tasks: PPO CartPole-v1 100k (RL-Zoo's preset: 8 envs, 32 steps, 20 epochs, batch
256) and SAC Pendulum-v1 5k (lr 1e-3), the same seed and hyperparameters on every side; rejax has PPO only
(gymnax's CartPole, the whole training loop one compiled program). Every run is a fresh process, one
thread (OMP/MKL/XLA), and the libraries take turns within each repeat (the order rotates per repeat),
so drifts in machine load hit all of them. Reported per task and library: median steps/s over the
library's own timed ``learn`` (rejax: the first call, compile included, and the compiled second call),
median wall of the whole process (start-up, imports and compile included: time to the trained policy
from the command line), the final eval return, and rlx's ratio to each peer.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("RLX_PEERS_CACHE", Path.home() / ".cache" / "rlx-peers"))

# peer -> (packages installed first, then the peer's own packages), and the script it runs
PEERS: dict[str, tuple[list[str], list[str], str]] = {
    "sb3": (["torch==2.13.0"], ["stable-baselines3"], "sb3_baseline.py"),
    "sbx": (["torch==2.13.0"], ["sbx-rl"], "sbx_baseline.py"),
    "rejax": ([], ["rejax", "gymnax<1"], "rejax_ppo_baseline.py"),
    "sb3c": (["torch==2.13.0"], ["stable-baselines3", "sb3-contrib"], "sb3_contrib_baseline.py"),
}

# task -> (rlx algo, rlx env, gymnasium id, steps, quick steps, peers that have it)
TASKS: dict[str, tuple[str, str, str, int, int, tuple[str, ...]]] = {
    "ppo_cartpole": ("ppo", "cartpole", "CartPole-v1", 100_000, 20_000, ("sb3", "sbx", "rejax")),
    "sac_pendulum": ("sac", "pendulum", "Pendulum-v1", 5_000, 1_000, ("rlx_compile", "sb3", "sbx")),
    # RL-Zoo's TD3/DDPG Pendulum presets start learning at 10k steps: 15k = 5k updates (quick: 11k = 1k)
    "td3_pendulum": ("td3", "pendulum", "Pendulum-v1", 15_000, 11_000, ("rlx_compile", "sb3", "sbx")),
    "ddpg_pendulum": ("ddpg", "pendulum", "Pendulum-v1", 15_000, 11_000, ("rlx_compile", "sb3", "sbx")),
    # issue 26: RL-Zoo's RecurrentPPO preset on both sides (env=cartpole_novel applies tuned/ppo_cartpole_novel.yaml;
    # RL-Zoo's `normalize: True` also normalizes rewards: env.normalize_reward=true here)
    "recurrent_ppo_cartpole_novel": ("ppo", "cartpole_novel", "CartPoleNoVel-v1", 100_000, 10_000, ("sb3c",)),
}
RLX_OVERRIDES: dict[str, list[str]] = {"recurrent_ppo_cartpole_novel": ["env.normalize_reward=true"]}
# rlx's own variants (no venv): "rlx_compile" is rlx with compile=true (the update step torch.compile'd; the
# kernels cached under ~/.cache/rlx/inductor: the first repeat compiles cold, later ones load them)
RLX_VARIANTS: dict[str, list[str]] = {"rlx": [], "rlx_compile": ["compile=true"]}
TITLES = {"ppo_cartpole": "PPO CartPole-v1", "sac_pendulum": "SAC Pendulum-v1", "td3_pendulum": "TD3 Pendulum-v1",
          "ddpg_pendulum": "DDPG Pendulum-v1", "recurrent_ppo_cartpole_novel": "Recurrent PPO (LSTM) CartPoleNoVel-v1"}
NAMES = {"rlx": "rlx", "rlx_compile": "rlx, compile=true", "sb3": "SB3", "sbx": "SBX", "rejax": "rejax",
         "sb3c": "sb3-contrib RecurrentPPO"}

ENV = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="rlx-peers-inductor-"),  # cold at first
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
       "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
       "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": "0"}


def venv_python(peer: str) -> Path:
    return CACHE / peer / "bin" / "python"


def ensure_venv(peer: str, log=print) -> Path:
    """The peer's venv, created and installed on first use (a ``.ready`` file names what it holds)."""
    first, pkgs, _ = PEERS[peer]
    root, python = CACHE / peer, venv_python(peer)
    ready = root / ".ready"
    want = json.dumps(first + pkgs)
    if ready.is_file() and ready.read_text() == want and python.is_file():
        return python
    log(f"peers: creating {root} ({' '.join(first + pkgs)}); one-time, minutes")
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    with open(root / "install.log", "w") as out:
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        if first:  # the CPU torch wheel where it is cached; without it pip picks the registry's default
            subprocess.run(pip + first, stdout=out, stderr=subprocess.STDOUT, check=False)
        r = subprocess.run(pip + first + pkgs, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"peers: installing {peer} failed; see {root / 'install.log'}")
    ready.write_text(want)
    return python


def versions(peer: str) -> str:
    mods = {"sb3": ["stable_baselines3", "torch"], "sbx": ["sbx", "jax", "stable_baselines3"],
            "rejax": ["rejax", "jax", "gymnax"], "sb3c": ["sb3_contrib", "stable_baselines3", "torch"]}[peer]
    code = ("import importlib.metadata as m, json; "
            f"print(json.dumps({{k: m.version(k) for k in {[m.replace('_', '-') for m in mods]!r}}}))")
    code = code.replace("'sbx'", "'sbx-rl'")
    r = subprocess.run([str(venv_python(peer)), "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return "?"
    return ", ".join(f"{k} {v}" for k, v in json.loads(r.stdout).items())


# --one-core (scripts/bench.py): every process pinned to this one CPU (``sched_setaffinity``), so "one thread per
# process" holds for libraries that start threads of their own despite the flags above (XLA does); None: unpinned
PIN_CPU: int | None = None
# the CPU seconds (user + system) of the last _timed process: cores used = CPU s / wall s
LAST_CPU_S = 0.0


def pinned() -> str:
    """How the processes ran, for a report's header."""
    return "" if PIN_CPU is None else f" (every process pinned to CPU {PIN_CPU}: --one-core)"


def _pin() -> None:
    if PIN_CPU is not None:
        os.sched_setaffinity(0, {PIN_CPU})


def _timed(cmd: list[str], cwd: str | Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` (pinned with --one-core); (its result, its wall). Its CPU seconds go to ``LAST_CPU_S``."""
    global LAST_CPU_S
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, preexec_fn=_pin)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r, wall


def _json_run(cmd: list[str], what: str) -> tuple[dict[str, Any], float]:
    """Run a peer (or rlx population) script; its last stdout line is its JSON result. (result, process wall)."""
    r, wall = _timed(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


def run_one(lib: str, task: str, steps: int, seed: int) -> dict[str, Any]:
    algo, env, env_id = TASKS[task][:3]
    if lib in RLX_VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-c", "from rlx.app.cli import main; main()", "train", f"algo={algo}", f"env={env}",
                   f"total_steps={steps}", f"seed={seed}", "eval.every=0", "checkpoint.every=0", "logger.progress=false",
                   "logger.wandb.mode=disabled", "torch_threads=1", "device=cpu", f"hydra.run.dir={tmp}/run",
                   *RLX_OVERRIDES.get(task, []), *RLX_VARIANTS[lib]]
            r, wall = _timed(cmd, cwd=tmp)
            if r.returncode != 0:
                raise RuntimeError(f"rlx failed on {task}: {r.stderr.strip()[-500:]}")
            s = json.loads(Path(tmp, "run", "summary.json").read_text())
        return {"sps": s["sps"], "learn_s": s["wall_s"], "process_s": wall, "cpu_s": LAST_CPU_S, "return": s["eval_return_mean"]}
    script = str(HERE / PEERS[lib][2])
    args = ["1", str(steps)] if lib == "rejax" else [algo, env_id, str(steps), str(seed)]
    d, wall = _json_run([str(venv_python(lib)), script, *args], f"{lib} on {task}")
    if lib == "rejax":  # one process trains twice (first call compiles): the process wall counts the first
        return {"sps": steps / d["first_call_s"], "learn_s": d["first_call_s"], "compiled_s": d["compiled_call_s"],
                "compiled_sps": steps / d["compiled_call_s"], "process_s": wall - d["compiled_call_s"],
                "cpu_s": LAST_CPU_S, "wall_both_calls_s": wall, "return": d["final_eval_mean"][0]}
    return {"sps": d["sps"], "learn_s": d["wall_s"], "process_s": wall, "cpu_s": LAST_CPU_S, "return": d["eval_mean"]}


def main(tasks: list[str], repeats: int, quick: bool, seed: int, peers: list[str], out_dir: Path | None,
         argv: list[str], seed_per_repeat: bool = False, stem: str = "peers") -> dict[str, Any]:
    """``seed_per_repeat``: repeat i runs seed + i on every side (else all repeats run ``seed``); writes
    ``out_dir/<stem>.{json,md}``."""
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    ready = []
    for peer in peers:
        if peer in RLX_VARIANTS:
            continue
        try:
            ensure_venv(peer, log)
            ready.append(peer)
        except Exception as e:  # one peer that cannot install does not stop the others
            log(f"peers: {peer} unavailable ({e}); left out")
    rows: list[dict[str, Any]] = []
    load0 = os.getloadavg()
    for task in tasks:
        steps = TASKS[task][4] if quick else TASKS[task][3]
        libs = ["rlx"] + [p for p in TASKS[task][5] if p in ready or (p in RLX_VARIANTS and p in peers)]
        runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
        for i in range(repeats):
            order = libs[i % len(libs):] + libs[:i % len(libs)]  # rotate: nobody always goes first
            for lib in order:
                runs[lib].append({"seed": seed + i if seed_per_repeat else seed,
                                  **run_one(lib, task, steps, seed + i if seed_per_repeat else seed)})
                log(f"{TITLES[task]} {steps:,} repeat {i + 1}/{repeats}: {lib} {runs[lib][-1]['sps']:,.1f} steps/s, "
                    f"process {runs[lib][-1]['process_s']:.1f} s, return {runs[lib][-1]['return']:.1f}")
        for lib in libs:
            def med(k: str, lib_runs: list[dict[str, Any]] = runs[lib]) -> float:
                return statistics.median(r[k] for r in lib_runs)

            row = {"task": task, "title": TITLES[task], "steps": steps, "lib": lib, "runs": runs[lib],
                   "sps": med("sps"), "learn_s": med("learn_s"), "process_s": med("process_s"), "return": med("return")}
            if lib == "rejax":
                row.update(compiled_s=med("compiled_s"), compiled_sps=med("compiled_sps"))
            row["cores"] = statistics.median(cores_used(r) for r in runs[lib])
            rows.append(row)
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "repeats": repeats, "quick": quick, "seed": seed, "seed_per_repeat": seed_per_repeat,
        "command": "python scripts/bench.py " + " ".join(argv),
        "versions": {p: versions(p) for p in ready}, "rows": rows, "pinned": pinned(),
    }
    table = render(result)
    print(table)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out_dir / f"{stem}.md").write_text(table + "\n")
    return result


def cores_used(run: dict[str, Any]) -> float:
    """The cores a run's process kept busy on average: its CPU seconds over its wall (rejax: both calls)."""
    return run.get("cpu_s", 0.0) / run.get("wall_both_calls_s", run["process_s"])


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    seeds = f"seeds {result['seed']}.. (repeat i: seed + i, the same on every side)" if result.get("seed_per_repeat") \
        else f"seed {result['seed']}"
    lines = ["# rlx vs " + ", ".join(NAMES[p] for p in result["versions"]), "",
             f"Measured {result['measured']} on {result['machine']}; load average {result['loadavg_start'][0]} at the "
             f"start, {result['loadavg_end'][0]} at the end (1 min); one thread per process{result.get('pinned', '')}, {seeds}, "
             f"median of {result['repeats']} alternating repeats{' (--quick: short runs)' if result['quick'] else ''}.",
             f"Command: `{result['command']}`. Peers: " + "; ".join(f"{NAMES[p]}: {v}" for p, v in result["versions"].items())
             + ".", "",
             "| task | steps | library | steps/s (learn) | learn s | process s | rlx / it (steps/s) | rlx / it (process) "
             "| final return | cores used |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = next(x for x in rows if x["task"] == r["task"] and x["lib"] == "rlx")
        comp = next((x for x in rows if x["task"] == r["task"] and x["lib"] == "rlx_compile"), None)
        same = r["lib"] == "rlx"
        sps_ratio = "-" if same else f"{base['sps'] / r['sps']:.2f}x"
        wall_ratio = "-" if same else f"{r['process_s'] / base['process_s']:.2f}x"
        if comp is not None and r["lib"] not in RLX_VARIANTS:  # the peer against rlx eager / rlx compile=true
            sps_ratio += f" / {comp['sps'] / r['sps']:.2f}x"
            wall_ratio += f" / {r['process_s'] / comp['process_s']:.2f}x"
        cores = f"{r['cores']:.2f}" if "cores" in r else "-"  # results written before cores were recorded: -
        lines.append(f"| {r['title']} | {r['steps']:,} | {NAMES[r['lib']]} | {r['sps']:,.1f} | {r['learn_s']:.1f} | "
                     f"{r['process_s']:.1f} | {sps_ratio} | {wall_ratio} | {r['return']:.1f} | {cores} |")
        if r["lib"] == "rejax":
            lines.append(f"| {r['title']} | {r['steps']:,} | rejax, compiled (2nd call) | {r['compiled_sps']:,.1f} | "
                         f"{r['compiled_s']:.1f} | - | {base['sps'] / r['compiled_sps']:.2f}x | - | - | - |")
    lines += ["", "steps/s (learn): env steps over the library's own timed training call (rlx: summary.json's `wall_s`; "
              "SB3/SBX: `model.learn`, SBX's JIT compile included; rejax: the first `train` call, compile included). "
              "process s: the whole process from the command line to the trained policy (interpreter start-up, imports, "
              "env and model construction, compile, training; rejax's second, compiled call subtracted). "
              "rlx / it > 1: rlx is faster; \"a / b\": rlx eager / rlx with compile=true (the first repeat compiles "
              "cold, later ones load inductor's cache). Final return: rlx/SB3/SBX deterministic, 10 episodes (rlx: its final eval); "
              "rejax: its own final evaluation. cores used: the process's CPU seconds (user + system) over its wall, "
              "median (1.00: one core kept busy; with --one-core every process is pinned to one CPU)."]
    lines += ["", "Each repeat (the libraries in turn, in the order run):", "",
              "| task | repeat | seed | library | steps/s (learn) | rlx / it (steps/s) | process s | final return |",
              "|---|---:|---:|---|---:|---:|---:|---:|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        base = next(r for r in task_rows if r["lib"] == "rlx")
        for i in range(len(base["runs"])):
            for r in task_rows:
                run, ref = r["runs"][i], base["runs"][i]
                ratio = "-" if r["lib"] == "rlx" else f"{ref['sps'] / run['sps']:.2f}x"
                lines.append(f"| {r['title']} | {i + 1} | {run.get('seed', result['seed'])} | {NAMES[r['lib']]} | "
                             f"{run['sps']:,.1f} | {ratio} | {run['process_s']:.1f} | {run['return']:.1f} |")
    return "\n".join(lines)


def population_vs_rejax(ks: list[int], steps: int, repeats: int, out_dir: Path | None, argv: list[str]) -> dict[str, Any]:
    """PPO CartPole-v1 populations (issue 27): one rlx population process of K members (``train_job``, K run
    dirs, every member's final evaluation) against rejax's ``jax.jit(jax.vmap(PPO.train))`` over K configs
    (its first call: compile included; ``rejax_ppo_baseline.py K STEPS once``), RL-Zoo's CartPole preset on
    both sides, clip ε cycling over the members (rlx 0.1/0.2/0.3 with seeds i // 3, rejax 0.1/0.2/0.25/0.3
    with K split keys: the values do not change the work), alternating, one thread each. Reported: the whole
    process's wall (start-up and imports included) and the training call's; rlx / rejax > 1: rlx is faster.
    Writes ``out_dir/population_rejax.{json,md}``."""
    from scripts.bench_population import POPULATION, QUIET

    ensure_venv("rejax", print)
    runs: dict[str, list[dict[str, Any]]] = {}
    load0 = os.getloadavg()
    for i in range(repeats):
        for k in ks:
            for lib in (("rlx", "rejax") if i % 2 == 0 else ("rejax", "rlx")):
                if lib == "rlx":
                    with tempfile.TemporaryDirectory() as tmp:
                        d, wall = _json_run([sys.executable, "-c", POPULATION, str(k), str(steps), "ppo", "cartpole", tmp,
                                             json.dumps(QUIET)], f"rlx population K={k}")
                    run = {"process_s": wall, "train_s": d["wall_s"], "cpu_s": LAST_CPU_S, "returns": d["returns"]}
                else:
                    d, wall = _json_run([str(venv_python("rejax")), str(HERE / PEERS["rejax"][2]), str(k), str(steps), "once"],
                                        f"rejax K={k}")
                    run = {"process_s": wall, "train_s": d["first_call_s"], "cpu_s": LAST_CPU_S, "returns": d["final_eval_mean"]}
                runs.setdefault(f"{lib}{k}", []).append(run)
                print(f"population K={k} repeat {i + 1}/{repeats}: {lib} process {wall:.1f} s, training {run['train_s']:.1f} s, "
                      f"returns min {min(run['returns']):.0f}", file=sys.stderr, flush=True)
    lines = [f"# rlx populations vs rejax's vmap: PPO CartPole-v1, {steps:,} steps per member", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} "
             f"cores, Python {platform.python_version()}; load average {load0[0]:.2f} at the start, "
             f"{os.getloadavg()[0]:.2f} at the end; one thread per process{pinned()}; median of {repeats} alternating repeat(s).",
             f"Command: `python scripts/bench.py {' '.join(argv)}`. rejax: {versions('rejax')}.", "",
             "| K | rlx process s | rejax process s | rlx / rejax (process) | rlx training s | rejax first call s "
             "| rlx / rejax (training) | member returns rlx (min / median) | rejax (min / median) | cores used rlx / rejax |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def med(rs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    for k in ks:
        a, b = runs[f"rlx{k}"], runs[f"rejax{k}"]
        ra, rb = sorted(x for r in a for x in r["returns"]), sorted(x for r in b for x in r["returns"])
        lines.append(f"| {k} | {med(a, 'process_s'):.1f} | {med(b, 'process_s'):.1f} | "
                     f"{med(b, 'process_s') / med(a, 'process_s'):.2f}x | {med(a, 'train_s'):.1f} | {med(b, 'train_s'):.1f} | "
                     f"{med(b, 'train_s') / med(a, 'train_s'):.2f}x | {ra[0]:.0f} / {statistics.median(ra):.0f} | "
                     f"{rb[0]:.0f} / {statistics.median(rb):.0f} | "
                     f"{statistics.median(map(cores_used, a)):.2f} / {statistics.median(map(cores_used, b)):.2f} |")
    lines += ["", "rlx training s: the population's `train_job` call (envs, training, K final evaluations, K run dirs); "
              "rejax first call s: `train` compiled and run once (its in-training evaluation at the end included). "
              "Returns: rlx deterministic final eval (10 episodes) per member; rejax its own final evaluation. "
              "Cores used: each process's CPU seconds over its wall (1.00: one core kept busy; --one-core pins every "
              "process to one CPU)."]
    result = {"steps": steps, "ks": ks, "repeats": repeats, "runs": runs, "command": "python scripts/bench.py " + " ".join(argv)}
    table = "\n".join(lines)
    print(table)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "population_rejax.json").write_text(json.dumps(result, indent=1) + "\n")
        (out_dir / "population_rejax.md").write_text(table + "\n")
    return result
