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
import math
from typing import Any, Iterator, Sequence, overload

import numpy as np
import torch
from torch import Tensor, nn

from rlx.buffers.rollout import Rollout
from rlx.networks.dict_obs import Obs, obs_map
from rlx.networks.mlp import ObsNormalizer
from rlx.networks.stacked import StackedMLP

M32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B9  # 2**32 / golden ratio: spreads consecutive integers over 32 bits


def mix32(x: Tensor) -> Tensor:
    """Chris Wellons' ``lowbias32`` integer hash (a bijection on 32 bits, strong avalanche) on an int64
    tensor holding unsigned 32-bit values. The products can pass 2**63; their low 32 bits are exact."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def mix32_int(x: int) -> int:
    """:func:`mix32` of one Python int (the reference for tests, and for keys)."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


class MemberRandom:
    """One random stream per member (issue 22: a member is its plain run), all drawn by whole-tensor ops.

    Member k's stream is a pure function of (its seed, ``stream``, position): value p of member k is
    ``hash(key_k, p)`` (counter-based, as JAX's and Philox's generators are), so what member k draws never
    depends on K, on which members share its population, or on how often the others draw; a plain run is
    K=1 of the same function. Each member advances only its own position (``advance``: e.g. PPO members
    that stopped their epochs early draw no more shuffles), so an uneven history stays each member's own.

    Values are cached for ``POOL`` positions per member and refilled ahead (from each member's current
    position: the values depend on positions only, never on when the cache was filled), so a draw is a
    gather, not a hash. The state is the positions: ``[K]``, checkpointed with the algorithm."""

    POOL = 8192

    def __init__(self, seeds: Sequence[int], device: torch.device, stream: int = 0, active: Tensor | None = None):
        self.k, self.device = len(seeds), device
        self.active = active  # the members that advance by default (Members.active: stopped members stay put)
        keys = [mix32_int(mix32_int(int(seed)) ^ mix32_int(stream * GOLDEN32 + 1)) for seed in seeds]
        self.keys = torch.tensor(keys, dtype=torch.int64, device=device).unsqueeze(1)  # [K, 1]
        self.position = torch.zeros(self.k, dtype=torch.int64, device=device)  # each member's next unused value
        self._pool: Tensor | None = None  # [K, POOL] uniforms at positions base_k + j
        self._base = self.position.clone()
        self._used = 0  # an upper bound on position - base over the members (no device sync to know it)

    def _uniforms_at(self, positions: Tensor) -> Tensor:
        """The uniforms in (0, 1) at ``positions`` ``[K, n]`` of each member's stream."""
        high, low = positions >> 32, positions & M32
        bits = mix32((mix32(self.keys ^ mix32(high)) + low * GOLDEN32) & M32)
        return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # 24 random bits: exact in float32

    def uniform(self, n: int, advance: Tensor | None = None) -> Tensor:
        """``[K, n]``: the next n uniforms in (0, 1) of each member's stream; members with ``advance`` False
        get values too but do not move on (they see them again next time); default: ``active``."""
        advance = self.active if advance is None else advance
        if n > self.POOL:
            values = self._uniforms_at(self.position.unsqueeze(1) + torch.arange(n, device=self.device))
            self._pool = None  # the positions move past the cache
        else:
            if self._pool is None or self._used + n > self.POOL:
                self._base = self.position.clone()
                self._pool = self._uniforms_at(self._base.unsqueeze(1) + torch.arange(self.POOL, device=self.device))
                self._used = 0
            offsets = (self.position - self._base).unsqueeze(1) + torch.arange(n, device=self.device)
            values = self._pool.gather(1, offsets)
            self._used += n
        self.position += n if advance is None else advance.to(torch.int64) * n
        return values

    def uniform_like(self, x: Tensor) -> Tensor:
        """Uniforms shaped like ``x`` ``[K, ...]`` (member k's row from member k's stream)."""
        return self.uniform(x[0].numel()).reshape(x.shape)

    def normal_like(self, x: Tensor) -> Tensor:
        """Standard normals shaped like ``x`` ``[K, ...]`` (Box-Muller on two uniforms each)."""
        n = x[0].numel()
        u = self.uniform(2 * n)
        radius = torch.sqrt(-2.0 * torch.log(u[:, :n]))
        return (radius * torch.cos((2.0 * math.pi) * u[:, n:])).reshape(x.shape).to(x.dtype)

    def gumbel_like(self, x: Tensor) -> Tensor:
        """Standard Gumbel noise shaped like ``x``: ``argmax(logits + g)`` samples ``Categorical(logits)``."""
        return -torch.log(-torch.log(self.uniform_like(x))).to(x.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return {"keys": self.keys[:, 0].clone(), "position": self.position.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.keys = state["keys"].to(self.device, torch.int64).reshape(self.k, 1).clone()
        self.position = state["position"].to(self.device, torch.int64).reshape(self.k).clone()
        self._pool, self._used = None, 0


def member_seeds(k: int, seeds: Sequence[int] | None) -> list[int]:
    """The members' seeds; without them (a unit test's algorithm), drawn from torch's global RNG."""
    if seeds is not None:
        return [int(s) for s in seeds]
    return [int(x) for x in torch.randint(0, 2**31 - 1, (k,)).tolist()]


class Members:
    def __init__(self, k: int, device: torch.device, obs_shape: Sequence[int], seeds: Sequence[int] | None = None):
        self.k, self.device, self.obs_rank = k, device, len(obs_shape)
        self.active = torch.ones(k, dtype=torch.bool, device=device)  # False: stopped (done or failed), never updated
        # acting, shuffles, replay: member k's own stream; a stopped member's does not move
        self.random = MemberRandom(member_seeds(k, seeds), device, active=self.active)
        # every [K, 1] hyperparameter the algorithm reads (by field name), in place: population-based training
        # (rlx.train.pbt) writes member rows into them; checkpoints hold their current values
        self.hypers: dict[str, Tensor] = {}
        self.pbt_rounds = torch.zeros(k, dtype=torch.long, device=device)  # PBT rounds this population has done

    def hyper(self, hps: Sequence[Any], name: str, none: float | None = None) -> Tensor:
        """``[K, 1]`` float tensor of each member's ``hps[k].<name>`` (booleans as 0/1; None as ``none``),
        registered in :attr:`hypers`: the algorithm reads it at every update, so a value written into it
        (PBT's explore) takes effect at the next one."""
        values = [getattr(h, name) for h in hps]
        if any(v is None for v in values):
            if none is None:
                raise ValueError(f"{name}: None for some member and no stand-in value")
            values = [none if v is None else v for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float32, device=self.device).reshape(-1, 1)
        self.hypers[name] = t
        return t

    def hyper_list(self, name: str, current: Sequence[float]) -> list[float]:
        """``current`` (a per-member list an optimizer or a Polyak step keeps) with the members whose
        :attr:`hypers` value differs from it (beyond float32 rounding) replaced by that value: a resume of
        unchanged values keeps the exact floats of the config."""
        values = self.hypers[name].reshape(-1).tolist()
        return [c if np.float32(c) == np.float32(v) else float(v) for c, v in zip(current, values, strict=True)]

    def hyper_state(self) -> dict[str, Any]:
        """The hyperparameters' current values (``[K, 1]`` each) and PBT's round count (``[K]``)."""
        return {"values": {name: t.clone() for name, t in self.hypers.items()}, "pbt_rounds": self.pbt_rounds.clone()}

    def load_hyper_state(self, state: dict[str, Any]) -> None:
        """Written in place (the algorithm holds these tensors); names this algorithm does not have are ignored."""
        for name, value in state["values"].items():
            if name in self.hypers:
                self.hypers[name].copy_(value.reshape(self.hypers[name].shape))
        self.pbt_rounds.copy_(state["pbt_rounds"].reshape(-1))

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
        """``[T, K*N, ...]`` fields -> ``[T, K, N, ...]`` views (a Dict observation: each key's)."""
        def split(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], self.k, -1, *x.shape[2:])

        fields: dict[str, Any] = {f.name: obs_map(split, getattr(rollout, f.name)) for f in dataclasses.fields(rollout)}
        return Rollout(**fields)

    @overload
    @staticmethod
    def member_major(x: Tensor) -> Tensor: ...
    @overload
    @staticmethod
    def member_major(x: Obs) -> Obs: ...
    @staticmethod
    def member_major(x: Obs) -> Obs:
        """``[T, K, N, ...]`` -> ``[K, T*N, ...]`` (member k's samples in time-major order; a Dict observation: each key's)."""
        return obs_map(lambda v: v.movedim(1, 0).reshape(v.shape[1], -1, *v.shape[3:]), x)

    def minibatches(self, n: int, batch_size: int, advance: Tensor | None = None) -> Iterator[Tensor | slice]:
        """Index minibatches over each member's ``n`` samples, ``[K, B]`` (member k's own shuffle, from its
        own stream; ``advance``: the members that use it), or the whole batch as one slice when it fits."""
        if batch_size >= n:
            yield slice(None)
            return
        perm = self.random.uniform(n, advance).argsort(1)
        for start in range(0, n, batch_size):
            yield perm[:, start : start + batch_size]

    @overload
    def take(self, x: Tensor, idx: Tensor | slice) -> Tensor: ...
    @overload
    def take(self, x: Obs, idx: Tensor | slice) -> Obs: ...
    def take(self, x: Obs, idx: Tensor | slice) -> Obs:
        """Member k's samples ``idx[k]`` of ``x`` ``[K, n, ...]`` -> ``[K, B, ...]`` (a Dict observation: each key's)."""
        if isinstance(idx, slice):
            return obs_map(lambda v: v[:, idx], x)
        rows = torch.arange(self.k, device=idx.device).unsqueeze(1)
        return obs_map(lambda v: v[rows, idx], x)


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
