"""One training run: typed settings from the composed config -> env, algorithm, logger -> loop -> summary.

Data flow: ``cli`` -> Hydra composes ``cfg`` -> :func:`parse_settings` (typed, validated) ->
:func:`train` builds everything and hands it to the algorithm's loop.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlx.checkpoint import Checkpointer
from rlx.config import build
from rlx.envs import EnvSpec, env_spec, make_vec_env
from rlx.errors import UserError
from rlx.evaluation import Evaluator
from rlx.logging import Logger
import importlib
from rlx.loops.session import Session
from rlx.registry import ALGOS
from rlx.schema import CheckpointConfig, EnvConfig, EvalConfig, LoggerConfig, NetworkConfig, RunConfig, WandbConfig

# algo.loop -> module with run(algo, envs, session, device); imported on demand.
LOOPS = {"on_policy": "rlx.loops.on_policy", "off_policy": "rlx.loops.off_policy", "async": "rlx.loops.async_workers"}
TOP_LEVEL_GROUPS = ("algo", "env", "network", "eval", "checkpoint", "logger", "hydra", "tuned", "sweep")


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


def parse_settings(cfg: DictConfig | dict) -> Settings:
    """Validate the whole composed config; raises UserError naming the first bad key."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    algo_node = dict(c.get("algo") or {})
    name = algo_node.pop("name", None)
    if name not in ALGOS:
        raise UserError(f"algo.name={name!r}: unknown algorithm; choose one of: {', '.join(ALGOS)}")
    logger_node = dict(c.get("logger") or {})
    wandb_node = logger_node.pop("wandb", None) or {}
    top = {k: v for k, v in c.items() if k not in TOP_LEVEL_GROUPS}
    return Settings(
        run=build(RunConfig, top, ""),
        algo_name=name,
        algo=build(ALGOS[name].Config, algo_node, "algo"),
        env=build(EnvConfig, c.get("env") or {}, "env"),
        network=build(NetworkConfig, c.get("network") or {}, "network"),
        eval=build(EvalConfig, c.get("eval") or {}, "eval"),
        checkpoint=build(CheckpointConfig, c.get("checkpoint") or {}, "checkpoint"),
        logger=build(LoggerConfig, logger_node, "logger"),
        wandb=build(WandbConfig, wandb_node, "logger.wandb"),
    )


def check_action_space(algo_name: str, spec: EnvSpec) -> None:
    kind = "discrete" if spec.discrete else "continuous"
    if kind not in ALGOS[algo_name].action_spaces:
        fits = [n for n, cls in ALGOS.items() if kind in cls.action_spaces]
        raise UserError(f"algo={algo_name} does not support {kind} actions ({spec.id}); algorithms that do: {', '.join(fits)}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device is available here; use device=auto or device=cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_algorithm(s: Settings, spec: EnvSpec, device: torch.device) -> Any:
    return ALGOS[s.algo_name](spec, s.algo, s.network, device)


def train(cfg: DictConfig | dict, run_dir: str | Path, resume: dict | None = None) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir``; returns (and writes) the summary. ``resume``: a loaded checkpoint."""
    s = parse_settings(cfg)
    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    if s.run.torch_threads:
        torch.set_num_threads(s.run.torch_threads)
    seed_everything(s.run.seed)
    device = resolve_device(s.run.device)
    spec = env_spec(s.env.id, s.env.kwargs)
    check_action_space(s.algo_name, spec)
    algo = build_algorithm(s, spec, device)
    envs = make_vec_env(s.env.id, s.env.num_envs, s.run.seed, s.env.kwargs, s.env.max_episode_steps)
    evaluator = Evaluator(s.env.id, s.eval.episodes, s.run.seed + 10_000, device, s.env.kwargs, s.env.max_episode_steps)
    start = resume["env_steps"] if resume else 0
    logger = Logger(run_dir, config, s.wandb, s.run.total_steps, s.logger.progress,
                    wandb_id=resume["session"]["wandb_id"] if resume else None, start_steps=start,
                    name=f"{s.algo_name}-{spec.id}-s{s.run.seed}")
    session = Session(algo, s.algo_name, config, logger, Checkpointer(run_dir / "checkpoints", s.checkpoint.keep), evaluator,
                      s.run.total_steps, s.logger.every, s.eval.every, s.checkpoint.every, s.env.num_envs, s.eval.deterministic)
    if resume:
        session.restore(resume)
    exit_code = 1
    try:
        summary = importlib.import_module(LOOPS[algo.loop]).run(algo, envs, session, device)
        summary["device"] = str(device)
        write_summary(run_dir, summary)
        logger.summary(summary)
        exit_code = 0
        return summary
    finally:
        logger.close(exit_code)
        envs.close()
        evaluator.close()


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    tmp = Path(run_dir) / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, Path(run_dir) / "summary.json")


def hydra_job(cfg: DictConfig) -> float | None:
    """The Hydra task function behind ``rlx train``: one run in Hydra's output dir.

    In a multirun a failed job is recorded (summary.json with status "failed" and the error) and the
    sweep goes on; the return value (final eval return) is the objective for sweepers like Optuna.
    """
    import sys
    import traceback

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun and hc.sweep.dir:  # all runs of one sweep share a W&B group: the sweep's id
        cfg.logger.wandb.group = cfg.logger.wandb.group or Path(hc.sweep.dir).name
    try:
        summary = train(cfg, run_dir)
        return summary["eval_return_mean"]
    except UserError as e:
        if multirun:
            write_summary(run_dir, {"status": "failed", "error": str(e)})
            print(f"rlx: run {run_dir} failed: {e}", file=sys.stderr)
            return None
        print(f"rlx: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if not multirun:
            raise
        write_summary(run_dir, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        (run_dir / "error.txt").write_text(traceback.format_exc())
        print(f"rlx: run {run_dir} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def evaluate_checkpoint(path: str | Path, episodes: int | None = None, deterministic: bool = True,
                        video_dir: str | Path | None = None, device: str = "cpu", seed: int | None = None) -> dict[str, Any]:
    """Rebuild the algorithm from a checkpoint alone (its config is inside) and evaluate it."""
    from rlx.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location="cpu")
    s = parse_settings(state["config"])
    dev = resolve_device(device)
    spec = env_spec(s.env.id, s.env.kwargs)
    algo = build_algorithm(s, spec, dev)
    algo.load_state_dict(state["algo"])
    n = episodes or s.eval.episodes
    evaluator = Evaluator(s.env.id, n, s.run.seed + 10_000 if seed is None else seed, dev, s.env.kwargs,
                          s.env.max_episode_steps, video_dir=video_dir)
    try:
        returns = evaluator(algo.act, deterministic)
    finally:
        evaluator.close()
    return {"checkpoint": state["path"], "algo": s.algo_name, "env_id": s.env.id, "env_steps": state["env_steps"],
            "episodes": int(len(returns)), "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "deterministic": deterministic}
