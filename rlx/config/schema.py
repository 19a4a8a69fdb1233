"""Typed run-level config nodes (env, network, eval, checkpoint, logger, top level)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from rlx.config.typed import param
from rlx.errors import UserError


@dataclass
class EnvConfig:
    id: str = param("CartPole-v1", help="any gymnasium id, or module:EnvId / module:Class")
    num_envs: int = param(1, ge=1, help="parallel envs in the vector env")
    max_episode_steps: int | None = param(None, ge=1, help="override the env's time limit")
    kwargs: dict = param({}, help="keyword arguments for gymnasium.make")
    wrappers: list[dict] = param([], help="gymnasium wrappers applied to every sub-env, in order: "
                                          "{_target_: pkg.mod.Wrapper, arg: value}")
    train_wrappers: list[dict] = param([], help="wrappers applied after env.wrappers to the training envs only (not evaluation)")
    normalize_reward: bool = param(False, help="divide the learner's rewards by the running std of the discounted return "
                                               "(stats in checkpoints)")
    batched: bool | Literal["auto"] = param(
        "auto", help="step classic-control sub-envs as one NumPy batch (rlx/envs/batched.py): true | false | auto (from 4 envs)")


@dataclass
class NetworkConfig:
    hidden_sizes: list[int] = param([64, 64], ge=1, help="MLP hidden layer widths")
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = param("tanh")
    encoder: Literal["mlp", "nature_cnn", "minatar_cnn", "impala_cnn"] = param(
        "mlp", help="observation encoder before the heads' MLPs: mlp (vectors) | nature_cnn | minatar_cnn | impala_cnn (images)")
    recurrent: Literal["none", "lstm", "gru"] = param(
        "none", help="recurrent core between the encoder and the heads (PPO, A2C): none | lstm | gru; the policy and "
                     "the critic each have one, its state carried per env and reset at episode starts")
    recurrent_hidden: int = param(64, ge=1, help="hidden size of the recurrent core (each layer)")
    recurrent_layers: int = param(1, ge=1, help="stacked layers of the recurrent core")
    dict_keys: list[str] | None = param(
        None, help="Dict observations (PPO, A2C): the keys the encoder reads, concatenated in this order (null: all "
                   "keys, in the space's order)")


@dataclass
class EvalConfig:
    every: int = param(20_000, ge=0, help="env steps between evaluations (0: only at the end)")
    episodes: int = param(10, ge=1)
    deterministic: bool = param(True)


@dataclass
class CheckpointConfig:
    every: int = param(50_000, ge=0, help="env steps between checkpoints (0: only at the end)")
    keep: int = param(3, ge=0, help="periodic checkpoints kept besides last.pt and best.pt")
    save_buffer: bool = param(True, help="store the replay buffer (off-policy) in checkpoints")


@dataclass
class WandbConfig:
    mode: Literal["offline", "online", "disabled"] = param("offline")
    project: str = param("rlx")
    entity: str | None = param(None)
    group: str | None = param(None)
    tags: list[str] = param([])
    init_timeout: float = param(10.0, gt=0, help="seconds to wait for the W&B server before logging offline instead")


@dataclass
class LoggerConfig:
    every: int = param(2048, ge=1, help="env steps between metrics.jsonl lines")
    progress: bool = param(True, help="show a progress bar (plain lines when not a TTY)")
    tensorboard: bool = param(True, help="write TensorBoard event files into RUN_DIR/tb (x-axis: env steps)")
    wandb: Any = None  # validated separately as WandbConfig


@dataclass
class StopConfig:
    reward_threshold: float | None = param(None, help="stop when a periodic deterministic eval return reaches this")
    patience: int = param(0, ge=0, help="stop after this many periodic evals without a new best (0: never)")


@dataclass
class PBTConfig:
    """Population-based training (Jaderberg et al. 2017) of a population's members (issue 25); defaults from
    Ray Tune's ``PopulationBasedTraining``. Checked against the population in :mod:`rlx.train.pbt`."""

    enabled: bool = param(False, help="exploit/explore rounds between the members of a population (hydra/launcher=population)")
    interval: int = param(20_000, gt=0, help="env steps per member between rounds; a multiple of eval.every")
    ready_evals: int = param(1, ge=1, help="a member's score: the mean of its last N periodic evals")
    quantile: float = param(0.25, gt=0, le=0.5, help="the bottom quantile of members copy members of the top quantile")
    resample_probability: float = param(0.25, ge=0, le=1, help="chance that an explored value is drawn anew within its bounds")
    perturb: list[float] = param([0.8, 1.2], gt=0, help="factors an explored value is multiplied by (one drawn per key)")
    keys: list[str] = param([], help="algo keys that mutate, e.g. [algo.lr, algo.clip_eps] ([]: the member keys the "
                                     "sweep varies)")
    bounds: dict = param({}, help="per key [low, high] (default: rlx.train.pbt.DEFAULT_BOUNDS)")
    replay: str | None = param(None, help="a plain run whose hyperparameters follow this schedule (JSON, as rlx report "
                                          "writes for a PBT winner: pbt_schedule_<member>.json)")


COMPILE_DEFAULT: Literal["auto"] = "auto"  # compile=null's value (rlx/algos/compiled.py: the auto rule)


@dataclass
class RunConfig:
    seed: int = param(0, ge=0, le=2**32 - 1, help="seeds Python, NumPy and torch; NumPy takes 0 to 2**32 - 1")
    device: str = param("auto", help="auto | cpu | cuda | cuda:N (N: GPU index, to pin a run to one GPU)")
    total_steps: int = param(100_000, gt=0, help="env steps to train for")
    torch_threads: int = param(1, ge=0, help="torch intra-op threads (0: torch's default); 1 is fastest for small MLPs")
    overwrite: bool = param(False, help="start over in a run dir that already holds a run (deletes it first)")
    init_from: str | None = param(None, help="start from this checkpoint's (or run dir's last.pt) weights, optimizer "
                                             "state and statistics, with this config's hyperparameters (RL-Zoo's "
                                             "--trained-agent); env steps count from 0")

    fused_kernels: bool = param(True, help="rlx's hand-written CPU kernels for MLPs (one autograd node per MLP, tanh as "
                                           "2 sigmoid(2z) - 1, transposed narrow products); false: plain torch ops (README 'Speed')")
    compile: Literal["auto", True, False] | None = param(
        None, help="torch.compile the update step (SAC, TD3, DDPG): auto | true | false; null: the default, "
                   f"{COMPILE_DEFAULT!r} (on where it pays: CUDA; README 'Speed')")

    def __post_init__(self) -> None:
        if self.compile is None:  # config.yaml leaves it null: the one default is here
            self.compile = COMPILE_DEFAULT
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise UserError(f"device={self.device!r}: expected 'auto' | 'cpu' | 'cuda' | 'cuda:N'")
