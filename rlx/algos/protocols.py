"""The contract between the training loops and the algorithms, written down (``typing.Protocol``s).

A loop knows an algorithm only through these; anything else an algorithm has is its own business.
Populations (issue 12): ``update`` returns one metrics dict per member (a plain run: a list of one, or
a bare dict for algorithms without a member dimension yet); :class:`PopulationAlgorithm` adds what the
population runner (rlx/train/population.py) needs; rlx.algos.compiled.CompiledUpdate, what ``compile`` switches.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from torch import Tensor

from rlx.buffers.rollout import Rollout
from rlx.members import Members

# one update's metrics: a dict (one run), or one dict per member of a population
Metrics = dict[str, float] | Sequence[dict[str, float]]


class Algorithm(Protocol):
    """What every run needs: acting for evaluation and checkpoints (rlx.train.session.Session, rlx eval).
    Which loop trains it is the class's ``loop`` (rlx.algos.registry.AlgorithmClass)."""

    def act(self, obs: Tensor, deterministic: bool = True) -> Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class OnPolicyAlgorithm(Algorithm, Protocol):
    """rlx.train.loops.on_policy: rollouts of ``n_steps`` per env, then one ``update`` on the whole rollout."""

    n_steps: int

    def explore(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(action, log pi(a|s), V(s)) for a batch of observations; may update observation statistics."""
        ...

    def policy_input(self, obs: Tensor) -> Tensor | None:
        """What the rollout stores for ``obs`` (the normalized observation the policy acted on), or None:
        the raw observation."""
        ...

    def value(self, obs: Tensor) -> Tensor:
        """V(s) for observations with any leading dims (``[..., N, *obs]`` -> ``[..., N]``)."""
        ...

    def update(self, rollout: Rollout, progress: float) -> Metrics: ...


@runtime_checkable
class StatefulOnPolicyAlgorithm(OnPolicyAlgorithm, Protocol):
    """An on-policy algorithm that may act with memory (``network.recurrent``: PPO, A2C). When ``recurrent``,
    ``explore`` and ``value`` read and advance a state per loop env, so the loop tells it after every step
    which envs' episodes ended (terminated or truncated; their state is reset before their next
    observation), and asks V(final observation) of a truncated episode at that step, before the reset (the
    state it needs is gone afterwards)."""

    @property
    def recurrent(self) -> bool: ...

    def episodes_ended(self, done: np.ndarray) -> None:
        """``done`` ``[n_envs]`` (the loop's env order) of the step just taken."""
        ...


@runtime_checkable
class RecurrentActor(Protocol):
    """Acting with memory, for evaluation (rlx.train.evaluation.Evaluator, ``rlx eval``, ``--video``): the
    evaluator holds the state of its own envs and marks where their episodes start; the training state
    (:class:`StatefulOnPolicyAlgorithm`) is left alone. ``recurrent`` False: act with ``act`` instead."""

    @property
    def recurrent(self) -> bool: ...

    def initial_state(self, n_envs: int) -> Tensor:
        """The state of ``n_envs`` envs (the evaluator's env order) at their episode start."""
        ...

    def act_recurrent(self, obs: Tensor, state: Tensor, starts: Tensor,
                      deterministic: bool = True) -> tuple[Tensor, Tensor]:
        """(actions, the next state) for ``obs`` ``[n_envs, *obs]``; ``starts`` ``[n_envs]`` bool: the envs whose
        episode starts with this observation (their state is reset first)."""
        ...


class OffPolicyAlgorithm(Algorithm, Protocol):
    """rlx.train.loops.off_policy: one env step, replay, ``update`` on sampled minibatches. ``hp`` carries the
    replay settings (rlx.algos.common.OffPolicyCommon); ``episodes_ended(done)``, if an
    algorithm has it, resets per-episode exploration state (OU noise)."""

    hp: Any

    def explore(self, obs: Tensor) -> Tensor: ...

    def update(self, batch: Any, progress: float) -> Metrics: ...


class PopulationAlgorithm(Algorithm, Protocol):
    """A population of K members (issue 12): the member layout (``members.active`` masks stopped members
    out of the updates), networks whose parameters are ``[K, ...]``, and acting as one member (its evaluation)."""

    members: Members

    def act_member(self, k: int, obs: Tensor, deterministic: bool = True) -> Tensor: ...
