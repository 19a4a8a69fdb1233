"""A run's pieces: typed settings from the composed config, the process set-up, one member's logger and
session, signals, the summary file, resume's config rules, and ``rlx eval`` of a checkpoint.

Data flow: ``cli`` -> Hydra composes ``cfg`` -> :func:`parse_settings` (typed, validated) -> the one
driver (rlx/train/driver.py) builds the job from these pieces and hands it to the algorithm's loop.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlx.algos.common import check_member_observations
from rlx.algos.compiled import set_compile
from rlx.algos.protocols import Algorithm
from rlx.algos.recurrent import RecurrentPopulationActorCritic
from rlx.algos.registry import ALGOS
from rlx.config.schema import (
    CheckpointConfig,
    EnvConfig,
    EvalConfig,
    LoggerConfig,
    NetworkConfig,
    PBTConfig,
    RunConfig,
    StopConfig,
    WandbConfig,
)
from rlx.config.typed import as_dict, build
from rlx.envs.make import EnvSpec, env_spec
from rlx.errors import UserError
from rlx.networks.dict_obs import dict_layout
from rlx.networks.fused import set_fused_kernels
from rlx.rundir.checkpoint import Checkpointer
from rlx.rundir.files import write_json_atomic
from rlx.rundir.logging import Logger
from rlx.train.evaluation import Evaluates, Evaluator
from rlx.train.session import Session

# algo.loop -> module with run(algo, envs, session, device); imported on demand.
LOOPS = {"on_policy": "rlx.train.loops.on_policy", "off_policy": "rlx.train.loops.off_policy",
         "async": "rlx.train.loops.async_workers", "ray": "rlx.train.loops.ray_workers"}
TOP_LEVEL_GROUPS = ("algo", "env", "network", "eval", "checkpoint", "logger", "hydra", "tuned", "sweep", "stop", "pbt")


@dataclass
class Settings:
    """Every config node as its typed dataclass."""

    run: RunConfig
    algo_name: str
    algo: Any
    env: EnvConfig
    network: NetworkConfig
    eval: EvalConfig
    checkpoint: CheckpointConfig
    logger: LoggerConfig
    wandb: WandbConfig
    stop: StopConfig | None = None  # read by the Session from the config (stop conditions)
    pbt: PBTConfig | None = None  # population-based training of a job's members (rlx.train.pbt)


def parse_settings(cfg: DictConfig | dict) -> Settings:
    """Validate the whole composed config; raises UserError naming the first bad key."""
    c = as_dict(cfg, resolve=True)
    algo_node = dict(c.get("algo") or {})
    name = algo_node.pop("name", None)
    if name not in ALGOS:
        raise UserError(f"algo.name={name!r}: unknown algorithm; choose one of: {', '.join(ALGOS)}")
    logger_node = dict(c.get("logger") or {})
    wandb_node = logger_node.pop("wandb", None) or {}
    top = {k: v for k, v in c.items() if k not in TOP_LEVEL_GROUPS}
    unknown = sorted(set(top) - {f.name for f in dataclasses.fields(RunConfig)})
    if unknown:
        raise UserError(_unknown_key_message(unknown[0], c))
    settings = Settings(
        run=build(RunConfig, top, ""),
        algo_name=name,
        algo=build(ALGOS[name].Config, algo_node, "algo"),
        env=build(EnvConfig, c.get("env") or {}, "env"),
        network=build(NetworkConfig, c.get("network") or {}, "network"),
        eval=build(EvalConfig, c.get("eval") or {}, "eval"),
        checkpoint=build(CheckpointConfig, c.get("checkpoint") or {}, "checkpoint"),
        logger=build(LoggerConfig, logger_node, "logger"),
        wandb=build(WandbConfig, wandb_node, "logger.wandb"),
        stop=build(StopConfig, c.get("stop") or {}, "stop"),
        pbt=build(PBTConfig, c.get("pbt") or {}, "pbt"),
    )
    check_rollout_batch(settings)
    return settings


def check_rollout_batch(s: Settings) -> None:
    """A minibatch larger than the rollout it is drawn from would silently be the whole rollout."""
    batch, n_steps = getattr(s.algo, "batch_size", None), getattr(s.algo, "n_steps", None)
    if batch is not None and n_steps is not None and batch > n_steps * s.env.num_envs:
        raise UserError(f"algo.batch_size={batch} is larger than one rollout (algo.n_steps x env.num_envs = "
                        f"{n_steps} x {s.env.num_envs} = {n_steps * s.env.num_envs}); allowed: 1 to {n_steps * s.env.num_envs}")


def _unknown_key_message(key: str, config: dict) -> str:
    """'unknown key' naming the nearest of ALL the config's keys (dotted), not just the top level's."""
    import difflib

    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for k, v in node.items():
            keys.append(prefix + str(k))
            if isinstance(v, dict) and v and k != "kwargs":
                walk(v, f"{prefix}{k}.")

    walk({k: v for k, v in config.items() if k not in (key, "hydra")}, "")
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(k) for k in close)}?" if close else \
        f"top-level keys: {', '.join(sorted(k for k in keys if '.' not in k))} (`rlx train --cfg job` shows every key)"
    return f"unknown key '{key}': {hint}"


def dict_algorithms() -> list[str]:
    """The algorithms that take Dict observations (their ``observation_spaces`` list ``dict``)."""
    return [n for n, cls in ALGOS.items() if "dict" in getattr(cls, "observation_spaces", ("box",))]


def check_action_space(algo_name: str, spec: EnvSpec) -> None:
    layout = dict_layout(spec.observation_space)
    if layout is not None and algo_name not in dict_algorithms():
        raise UserError(f"algo={algo_name} does not support Dict observations (env.id={spec.id}: {layout.space}); "
                        f"algorithms that take Dict observations: {', '.join(dict_algorithms())}")
    kind = "discrete" if spec.discrete else "continuous"
    if kind not in ALGOS[algo_name].action_spaces:
        fits = [n for n, cls in ALGOS.items() if kind in cls.action_spaces]
        raise UserError(f"algo={algo_name} does not support {kind} actions ({spec.id}); algorithms that do: {', '.join(fits)}")


def check_population_spaces(s: Settings, members: int) -> None:
    """What an off-policy population of ``members`` cannot take yet (rlx.algos.common.check_member_observations),
    refused before any run dir is written; on-policy populations stack every encoder and take every Dict."""
    if members < 2 or ALGOS[s.algo_name].loop != "off_policy":
        return
    spec = env_spec(s.env.id, s.env.kwargs, s.env.wrappers, s.env.train_wrappers, s.network.encoder)
    check_member_observations(spec, s.network, members)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: no CUDA device is available here; use device=auto or device=cpu")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise UserError(f"device={name}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return device


def job_device(device: str, job_num: int, n_gpus: int) -> str:
    """device=auto in a multirun on a machine with several GPUs: job k runs on GPU k mod n_gpus."""
    return f"cuda:{job_num % n_gpus}" if device == "auto" and n_gpus > 1 else device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_process(s: Settings) -> tuple[torch.device, EnvSpec]:
    """What every training process does first (a run, or a population with its first member's settings):
    torch threads, seeds, the device, and the env's spec checked against the algorithm."""
    if s.run.torch_threads:
        torch.set_num_threads(s.run.torch_threads)
    set_fused_kernels(s.run.fused_kernels)
    seed_everything(s.run.seed)
    device = resolve_device(s.run.device)
    spec = env_spec(s.env.id, s.env.kwargs, s.env.wrappers, s.env.train_wrappers, s.network.encoder)
    check_action_space(s.algo_name, spec)
    return device, spec


def build_algorithm(settings: Settings | Sequence[Settings], spec: EnvSpec, device: torch.device) -> Any:
    """A job's algorithm (rlx/train/driver.py): K members stacked, member k initialized as its plain run
    initializes it (the algorithm's class has ``member_keys``: a member dimension), or, for an algorithm
    without one, the one member's algorithm. One Settings: a plain run's (a job of one)."""
    group = [settings] if isinstance(settings, Settings) else list(settings)
    s0, cls = group[0], cast(Any, ALGOS[group[0].algo_name])
    if s0.network.recurrent != "none" and not issubclass(cls, RecurrentPopulationActorCritic):
        raise UserError(f"network.recurrent={s0.network.recurrent}: recurrent policies are for algo=ppo and algo=a2c, "
                        f"not algo={s0.algo_name}; set network.recurrent=none")
    if getattr(cls, "member_keys", ()):
        algo = cls(spec, [s.algo for s in group], s0.network, device, seeds=[s.run.seed for s in group])
    elif len(group) > 1:
        raise UserError(f"algo={s0.algo_name} has no member dimension: a job of {len(group)} members is not possible")
    else:
        algo = cls(spec, s0.algo, s0.network, device)
    set_compile(algo, s0.run.compile, device)  # compile=true|auto: the update step compiled (rlx/algos/compiled.py)
    return algo


def trained_steps(s: Settings) -> int:
    """The env steps a run trains and counts (issue 24, one rule for plain runs and members): the loops step
    whole rollouts (on-policy: algo.n_steps x env.num_envs; ac_online: one step of every env) or whole vector
    steps (off-policy), so total_steps rounds up to a whole number of them; A3C's workers share a counter
    (total_steps, give or take the last rollouts). Progress is shown against this number."""
    import math

    cls = ALGOS[s.algo_name]
    if cls.loop in ("async", "ray"):
        return s.run.total_steps
    per = s.env.num_envs
    if cls.loop == "on_policy":
        configured = getattr(s.algo, "n_steps", None)
        per *= int(configured if configured is not None else getattr(cls, "n_steps", 1))
    return math.ceil(s.run.total_steps / per) * per


def eval_seed(seed: int) -> int:
    """The seed of a run's evaluation envs: apart from its training envs' (seed + i)."""
    return seed + 10_000


def run_session(s: Settings, config: dict, run_dir: Path, algo: Algorithm, spec: EnvSpec, device: torch.device,
                resume: dict | None, stack: contextlib.ExitStack, exit_code: Callable[[], int], progress: bool = True,
                evaluator: Evaluates | None = None) -> Session:
    """One run's evaluator (unless given one: a population member's share of its population's),
    logger (closed with ``exit_code()`` when ``stack`` unwinds) and session, for ``algo`` (a plain run's
    algorithm, or a population member's view of its population)."""
    start = resume["env_steps"] if resume else 0
    if evaluator is None:
        own = Evaluator(s.env.id, s.eval.episodes, eval_seed(s.run.seed), device, s.env.kwargs, s.env.max_episode_steps,
                        wrappers=s.env.wrappers)
        stack.callback(own.close)
        evaluator = own
    logger = Logger(run_dir, config, s.wandb, trained_steps(s), s.logger.progress and progress,
                    wandb_id=resume["session"]["wandb_id"] if resume else None, start_steps=start,
                    name=f"{s.algo_name}-{spec.id}-s{s.run.seed}")
    stack.callback(lambda: logger.close(exit_code()))
    session = Session(algo, s.algo_name, config, logger, Checkpointer(run_dir / "checkpoints", s.checkpoint.keep),
                      evaluator, s.run.total_steps, s.logger.every, s.eval.every, s.checkpoint.every, s.env.num_envs,
                      s.eval.deterministic)
    session.save_buffer = s.checkpoint.save_buffer
    logger.message(f"rlx: {'resuming' if resume else 'run'} {s.algo_name} on {spec.id} in {run_dir}"
                   + (f" from env step {start:,}" if resume else ""))
    return session


@contextlib.contextmanager
def stop_on_signals(session: Session, logger: Logger):
    """SIGTERM/SIGINT: finish the current step, checkpoint, exit cleanly. A second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only live in the main thread (e.g. joblib launcher threads)
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if session.stop_requested is not None:
            logger.message(f"rlx: second {name}: exiting now (last checkpoint is intact)")
            os._exit(128 + signum)
        session.stop_requested = name
        logger.message(f"rlx: {name} received: saving a checkpoint at the next safe point (again to exit at once)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / "summary.json", summary)


def exit_status(summary: dict[str, Any]) -> int:
    """0 for a finished run; 130/143 (128 + signal, as shells report it) for one stopped by SIGINT/SIGTERM."""
    if summary.get("status") != "stopped":
        return 0
    return 128 + (signal.SIGINT if summary.get("stopped_by") == "SIGINT" else signal.SIGTERM)


def evaluate_checkpoint(path: str | Path, episodes: int | None = None, deterministic: bool = True,
                        video_dir: str | Path | None = None, device: str = "cpu", seed: int | None = None) -> dict[str, Any]:
    """Rebuild the algorithm from a checkpoint alone (its config is inside) and evaluate it."""
    from rlx.rundir.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location="cpu", with_buffer=False)
    s = parse_settings(state["config"])
    dev = resolve_device(device)
    spec = env_spec(s.env.id, s.env.kwargs, s.env.wrappers, s.env.train_wrappers, s.network.encoder)
    algo = build_algorithm(s, spec, dev)
    algo.load_state_dict(state["algo"])
    n = episodes or s.eval.episodes
    evaluator = Evaluator(s.env.id, n, eval_seed(s.run.seed) if seed is None else seed, dev, s.env.kwargs,
                          s.env.max_episode_steps, video_dir=video_dir, wrappers=s.env.wrappers)
    try:
        returns = evaluator(algo.act, deterministic)
    finally:
        evaluator.close()
    return {"checkpoint": state["path"], "algo": s.algo_name, "env_id": s.env.id, "env_steps": state["env_steps"],
            "episodes": int(len(returns)), "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "deterministic": deterministic}


# Keys a resume may change: they affect how long and how visibly a run goes on, not what it learns.
RESUMABLE_KEYS = ("total_steps", "device", "torch_threads", "fused_kernels", "compile", "eval.every", "eval.episodes",
                  "checkpoint.every", "checkpoint.keep", "logger.every", "logger.progress", "logger.wandb.mode",
                  "logger.tensorboard", "stop.reward_threshold", "stop.patience")


def resumed_config(config: dict, overrides: Sequence[str]) -> dict[str, Any]:
    """A checkpoint's config with a resume's overrides applied; only :data:`RESUMABLE_KEYS` may change."""
    node = OmegaConf.create(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"resume override '{item}': expected key=value")
        if key not in RESUMABLE_KEYS:
            raise UserError(f"{key} cannot be changed when resuming (it would change what the run learns); "
                            f"allowed: {', '.join(RESUMABLE_KEYS)}")
        OmegaConf.update(node, key, override_value(value), force_add=False)
    return as_dict(node)


def override_value(text: str) -> Any:
    """The typed value of an override's value text, parsed by Hydra's own override grammar exactly as
    ``rlx train`` would (``1e5`` -> 100000.0, ``true`` -> True, ``null`` -> None, ``[1,2]`` -> list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (parsed,) = OverridesParser.create().parse_overrides([f"value={text}"])
    except HydraException as e:
        raise UserError(f"'{text}': not a value Hydra can parse ({str(e).splitlines()[0]})") from None
    if parsed.is_sweep_override():
        raise UserError(f"'{text}': one value expected, not a sweep")
    return parsed.value()


def truncate_metrics(path: Path, env_steps: int) -> None:
    """Drop lines logged after the checkpoint (work that the resume will redo), keeping the file a clean history."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["env_steps"] <= env_steps:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a half-written last line from a kill
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
