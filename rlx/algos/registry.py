"""Algorithm names -> classes: a plain dict, the single place the CLI and configs look algorithms up."""
from __future__ import annotations

from typing import Any, Protocol

import torch

from rlx.algos.a2c import A2C
from rlx.algos.a3c import A3C
from rlx.algos.ac_batch import BatchAC
from rlx.algos.ac_online import OnlineAC
from rlx.algos.ddpg import DDPG
from rlx.algos.offpolicy_ac import OffPolicyAC
from rlx.algos.ppo import PPO
from rlx.algos.reinforce import Reinforce
from rlx.algos.sac import SAC
from rlx.algos.sac_discrete import SACDiscrete
from rlx.algos.sac_v import SACV
from rlx.algos.td3 import TD3
from rlx.algos.trpo import TRPO
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec


class AlgorithmClass(Protocol):
    """What the CLI and the run need of an algorithm class (read-only class attributes + the constructor)."""

    @property
    def Config(self) -> type[Any]: ...  # the hyperparameter dataclass that ``algo.*`` is built into

    @property
    def action_spaces(self) -> tuple[str, ...]: ...  # "discrete" and/or "continuous"

    @property
    def loop(self) -> str: ...  # a key of rlx.train.run.LOOPS

    def __call__(self, spec: EnvSpec, hp: Any, net: NetworkConfig, device: torch.device) -> Any: ...


# --- on-policy family ---------------------------------------------------------------------------
ON_POLICY: dict[str, AlgorithmClass] = {
    "ppo": PPO,
    "reinforce": Reinforce,
    "ac_batch": BatchAC,
    "ac_online": OnlineAC,
    "a2c": A2C,
    "a3c": A3C,
    "trpo": TRPO,
}

# --- off-policy family --------------------------------------------------------------------------
OFF_POLICY: dict[str, AlgorithmClass] = {
    "offpolicy_ac": OffPolicyAC,
    "ddpg": DDPG,
    "td3": TD3,
    "sac": SAC,
    "sac_v": SACV,
    "sac_discrete": SACDiscrete,
}

ALGOS: dict[str, AlgorithmClass] = {**ON_POLICY, **OFF_POLICY}

DESCRIPTIONS: dict[str, str] = {
    "ppo": "PPO-clip with GAE(lambda), vectorized envs",
    "reinforce": "Monte-Carlo policy gradient, reward-to-go, optional learned baseline, whole episodes",
    "ac_batch": "batch actor-critic: fit V to episode returns, TD advantage, one policy step per batch",
    "ac_online": "online actor-critic: one env step, then one critic and one actor update (TD error)",
    "a2c": "synchronous advantage actor-critic, n-step returns/GAE over lockstep vectorized envs",
    "a3c": "asynchronous advantage actor-critic: Hogwild worker processes, shared RMSprop/Adam",
    "trpo": "trust region policy optimization: conjugate-gradient natural step within a KL bound, line search, GAE(lambda)",
    "offpolicy_ac": "off-policy actor-critic: replay buffer, fitted Q, score-function gradient with fresh policy actions",
    "ddpg": "deep deterministic policy gradient: actor + critic, target copies (Polyak), OU/Gaussian exploration noise",
    "td3": "twin delayed DDPG: clipped double-Q, target-policy smoothing, delayed actor updates",
    "sac": "soft actor-critic: twin Q + Polyak targets, tanh-Gaussian policy, fixed or learned temperature",
    "sac_v": "soft actor-critic with a soft value network V and its target (the original formulation)",
    "sac_discrete": "soft actor-critic for discrete actions: categorical policy, exact expectations, learned temperature",
}
