"""The member dimension of a population (issue 12): K configurations trained as one batched run.

Conventions every population algorithm follows:
- the loop's env batch is member-major: with N envs per member, envs ``k*N .. (k+1)*N - 1`` are member
  k's, so one ``[K*N]`` vector env (one batched NumPy call for classic control) serves every member;
- the networks take ``[K, B, ...]`` (member k's batch in row k) and return ``[K, B, ...]``;
- hyperparameters are ``[K, 1]`` tensors that broadcast through the pure objectives;
- a plain run is K=1: the same code, not a separate path.

:class:`Members` holds K, which members are still training, and the reshapes between those layouts.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from rlx.buffers.rollout import Rollout
from rlx.networks.mlp import ObsNormalizer
from rlx.networks.stacked import StackedMLP


class Members:
    def __init__(self, k: int, device: torch.device, obs_shape: Sequence[int]):
        self.k, self.device, self.obs_rank = k, device, len(obs_shape)
        self.active = torch.ones(k, dtype=torch.bool, device=device)  # False: stopped (done or failed), never updated

    def hyper(self, hps: Sequence[Any], name: str, none: float | None = None) -> Tensor:
        """``[K, 1]`` float tensor of each member's ``hps[k].<name>`` (booleans as 0/1; None as ``none``)."""
        values = [getattr(h, name) for h in hps]
        if any(v is None for v in values):
            if none is None:
                raise ValueError(f"{name}: None for some member and no stand-in value")
            values = [none if v is None else v for v in values]
        return torch.tensor([float(v) for v in values], dtype=torch.float32, device=self.device).reshape(-1, 1)

    # -- the loop's [..., K*N, *obs] <-> the members' [K, B, *obs] ----------------------------------
    def split(self, x: Tensor) -> Tensor:
        """``[*lead, K*N, *event]`` (``event``: the observation's dims) -> ``[K, prod(lead)*N, *event]``."""
        lead, event = x.shape[: x.dim() - self.obs_rank - 1], x.shape[x.dim() - self.obs_rank:]
        y = x.reshape(*lead, self.k, -1, *event)
        if lead:
            y = y.movedim(len(lead), 0)
        return y.reshape(self.k, -1, *event)

    def join(self, y: Tensor, like: Tensor) -> Tensor:
        """Inverse of :meth:`split` for an output ``[K, prod(lead)*N, *rest]`` of input ``like``:
        -> ``[*lead, K*N, *rest]``."""
        lead = like.shape[: like.dim() - self.obs_rank - 1]
        rest = y.shape[2:]
        y = y.reshape(self.k, *lead, -1, *rest)
        if lead:
            y = y.movedim(0, len(lead))
        return y.reshape(*lead, -1, *rest)

    # -- rollouts ------------------------------------------------------------------------------------
    def per_member(self, rollout: Rollout) -> Rollout:
        """``[T, K*N, ...]`` fields -> ``[T, K, N, ...]`` views."""
        return Rollout(**{f.name: (lambda x: x.reshape(x.shape[0], self.k, -1, *x.shape[2:]))(getattr(rollout, f.name))
                          for f in dataclasses.fields(rollout)})

    @staticmethod
    def member_major(x: Tensor) -> Tensor:
        """``[T, K, N, ...]`` -> ``[K, T*N, ...]`` (member k's samples in time-major order)."""
        return x.movedim(1, 0).reshape(x.shape[1], -1, *x.shape[3:])

    def minibatches(self, n: int, batch_size: int) -> Iterator[Tensor | slice]:
        """Index minibatches over each member's ``n`` samples, ``[K, B]`` (member k's own shuffle), or the
        whole batch as one slice when it fits."""
        if batch_size >= n:
            yield slice(None)
            return
        perm = torch.rand(self.k, n, device=self.device).argsort(1)
        for start in range(0, n, batch_size):
            yield perm[:, start : start + batch_size]

    def take(self, x: Tensor, idx: Tensor | slice) -> Tensor:
        """Member k's samples ``idx[k]`` of ``x`` ``[K, n, ...]`` -> ``[K, B, ...]``."""
        if isinstance(idx, slice):
            return x[:, idx]
        rows = torch.arange(self.k, device=x.device).unsqueeze(1)
        return x[rows, idx]


def member_view(module: nn.Module, k: int, members: int) -> nn.Module:
    """Member k of a stacked module (every ``[K, ...]`` parameter and buffer) as a module of ONE member
    whose tensors are views of row k: it always holds member k's current weights and statistics (the
    optimizer, ``load_state_dict`` and the normalizer update them in place), and acting with it costs one
    member's forward instead of K's (an evaluation of member k: ``model.act(obs.expand(K, ...))[k]`` ran
    all K). Modules with a member count attribute (``n`` of a StackedMLP, ``members`` of an
    ObsNormalizer) get 1. For acting only: its parameters do not require gradients."""
    memo: dict[int, Any] = {}
    with torch.inference_mode(False), torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.dim() and t.shape[0] == members:
                v = t.detach()[k : k + 1]
                memo[id(t)] = nn.Parameter(v, requires_grad=False) if isinstance(t, nn.Parameter) else v
        view = copy.deepcopy(module, memo)
    for m in view.modules():
        if isinstance(m, StackedMLP):
            m.n = 1
        elif isinstance(m, ObsNormalizer) and m.members is not None:
            m.members = 1
    return view


def member_state(state: Any, k: int, members: int) -> Any:
    """Member k's part of a population's state (every tensor's leading dim is the member dim): the
    same layout as a plain run's (a population of one) state. K=1: the state itself."""
    if members == 1:
        return state
    if isinstance(state, Tensor):
        return state[k : k + 1].clone() if state.dim() else state.clone()
    if isinstance(state, dict):
        return {key: member_state(v, k, members) for key, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(member_state(v, k, members) for v in state)
    return state


def stack_states(states: Sequence[Any]) -> Any:
    """Inverse of :func:`member_state`: K members' states -> the population's (tensors concatenated on
    their leading member dim; anything else taken from member 0)."""
    first = states[0]
    if len(states) == 1:
        return first
    if isinstance(first, Tensor):
        return torch.cat(list(states)) if first.dim() else first
    if isinstance(first, dict):
        return {key: stack_states([s[key] for s in states]) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack_states([s[i] for s in states]) for i in range(len(first)))
    return first
