"""Actor and critic heads of the off-policy family: tanh-Gaussian and deterministic actors, Q ensembles.

Actors work in the unit box [-1, 1]^d; the algorithm maps to the env's Box with ``scale_action``.
Initialization is PyTorch's ``nn.Linear`` default, as in SB3's SAC/TD3/DDPG, for like-for-like runs.
Each module optionally owns an observation ``encoder`` (:mod:`rlx.networks.encoders`; ``obs_dim`` is then
its feature width): the actor its own, a critic ensemble one for all its members (as SB3's critics).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rlx.networks.ensemble import EnsembleMLP
from rlx.networks.fused import FUSED_ACTIVATIONS, fused_mlp
from rlx.networks.mlp import ACTIVATIONS, mlp
from rlx.objectives.distributions import tanh_gaussian_deterministic, tanh_gaussian_sample

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3/SAC-paper clamp: keeps σ away from 0 and from exploding


def _encode(encoder: nn.Module | None, obs: Tensor) -> Tensor:
    return obs if encoder is None else encoder(obs)


class TanhGaussianActor(nn.Module):
    """π(a|s): a = tanh(μ(s) + σ(s)·ε). One MLP whose last layer outputs [μ, log σ] (the same function
    as SB3's latent MLP + two linear heads)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = mlp(obs_dim, 2 * act_dim, hidden_sizes, activation, orthogonal_init=False)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ), log σ clamped to [LOG_STD_MIN, LOG_STD_MAX]."""
        mean, log_std = self.net(_encode(self.encoder, obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterized (a, log π(a|s)) in the unit box."""
        return tanh_gaussian_sample(*self(obs))

    def mode(self, obs: Tensor) -> Tensor:
        return tanh_gaussian_deterministic(self(obs)[0])


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) in the unit box (DDPG/TD3)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = mlp(obs_dim, act_dim, hidden_sizes, activation, orthogonal_init=False)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(_encode(self.encoder, obs)))


class QEnsemble(nn.Module):
    """``n`` critics Q_i(s, a) on [s, a] -> ``[n, B]`` (continuous actions, in the unit box)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str, n: int = 2,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = EnsembleMLP(obs_dim + act_dim, 1, hidden_sizes, activation, n)

    def forward(self, obs: Tensor, actions: Tensor, members: int | None = None, detach_params: bool = False) -> Tensor:
        x = obs
        if self.encoder is not None:  # detach_params: no gradient into the encoder's weights either
            x = _call_detached(self.encoder, obs) if detach_params else self.encoder(obs)
        return self.net(torch.cat([x, actions], dim=-1), members, detach_params).squeeze(-1)


class DiscreteQEnsemble(nn.Module):
    """``n`` critics giving Q_i(s, ·) for every action at once: ``[B, obs] -> [n, B, A]``."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int], activation: str, n: int = 2,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = EnsembleMLP(obs_dim, n_actions, hidden_sizes, activation, n)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(_encode(self.encoder, obs))


class CategoricalActor(nn.Module):
    """Logits of π(·|s) over a Discrete action space (discrete SAC): ``[B, *obs] -> [B, A]``; an MLP on
    the (optionally encoded) observation."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int], activation: str,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = mlp(obs_dim, n_actions, hidden_sizes, activation, orthogonal_init=False)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(_encode(self.encoder, obs))


def _call_detached(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` with its parameters treated as constants (gradient still flows to ``x``)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, (x,))


# --------------------------------------------------------------------------------------------------
# Populations (issue 12): K members' heads with a member dimension, [K, B, ...] -> [K, ...]
# --------------------------------------------------------------------------------------------------


class MemberMLP(nn.Module):
    """K members x E MLPs (twin critics: E=2; an actor: E=1) as one module: ``[K, B, in]`` -> ``[K, E, B, out]``,
    member k's E networks on member k's inputs only. Weights ``[K, E, in, out]``, biases ``[K, E, 1, out]``.

    On CPU each network runs as rlx's fused MLP (:func:`rlx.networks.fused.fused_mlp`, what a plain run's
    MLP runs) on views of the weights: MKL's plain gemm beats its batched one for these shapes. On CUDA
    (or ``batched=True``) one ``baddbmm`` per layer for all K*E networks."""

    def __init__(self, sizes: Sequence[int], activation: str, k: int, e: int):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(k, e, a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(k, e, 1, b)) for b in sizes[1:])
        self.activation = ACTIVATIONS[activation]()
        self.activation_name = activation
        self.k, self.e = k, e
        self.batched: bool | None = None

    @staticmethod
    def _activation_name(modules: Sequence[nn.Module]) -> str:
        kinds = {type(m) for m in modules}
        names = [name for name, a in ACTIVATIONS.items() if {a} == kinds]
        if len(names) != 1:
            raise ValueError(f"networks of one activation expected, got {kinds}")
        return names[0]

    @classmethod
    def from_mlps(cls, mlps: Sequence[nn.Sequential]) -> MemberMLP:
        """Member k = ``mlps[k]`` (E=1): same layer sizes and activation for all."""
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in mlps]
        act = cls._activation_name([m for net in mlps for m in net if not isinstance(m, nn.Linear)])
        sizes = [linears[0][0].in_features] + [layer.out_features for layer in linears[0]]
        ref = linears[0][0].weight
        out = cls(sizes, act, len(mlps), 1).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for i in range(len(sizes) - 1):
                out.weights[i].copy_(torch.stack([ls[i].weight.t() for ls in linears]).unsqueeze(1))
                out.biases[i].copy_(torch.stack([ls[i].bias for ls in linears]).reshape(len(mlps), 1, 1, -1))
        return out

    @classmethod
    def from_ensembles(cls, ensembles: Sequence[EnsembleMLP]) -> MemberMLP:
        """Member k = ``ensembles[k]`` (its E networks)."""
        ref = ensembles[0]
        sizes = [ref.weights[0].shape[1]] + [w.shape[2] for w in ref.weights]
        out = cls(sizes, cls._activation_name([e.activation for e in ensembles]), len(ensembles), ref.n)
        out = out.to(device=ref.weights[0].device, dtype=ref.weights[0].dtype)
        with torch.no_grad():
            for i in range(len(sizes) - 1):
                out.weights[i].copy_(torch.stack([e.weights[i] for e in ensembles]))
                out.biases[i].copy_(torch.stack([e.biases[i] for e in ensembles]))
        return out

    def forward(self, x: Tensor, detach_params: bool = False, first: int | None = None) -> Tensor:
        """``x`` ``[K, B, in]`` -> ``[K, E, B, out]``; ``detach_params``: no gradient into the weights (still into ``x``);
        ``first``: only each member's first ``first`` networks (``[K, first, B, out]``; TD3's actor step uses Q_1 only)."""
        ws, bs = list(self.weights), list(self.biases)
        n_e = self.e if first is None else first
        if n_e != self.e:
            ws, bs = [w[:, :n_e] for w in ws], [b[:, :n_e] for b in bs]
        if detach_params:
            ws, bs = [w.detach() for w in ws], [b.detach() for b in bs]
        last = len(ws) - 1
        if not (self.batched or (self.batched is None and x.is_cuda)):
            # CPU: each of the K*E MLPs as rlx's fused MLP (one autograd node, rlx/networks/fused.py: what a
            # plain run's nn.Linear MLP runs) on views of the stacked weights; MKL's plain gemm beats its
            # batched one for these shapes (rlx/networks/ensemble.py)
            wl = [w.unbind(0) for w in ws]
            bl = [b.unbind(0) for b in bs]
            outs = []
            for k in range(self.k):
                wk = [w[k].unbind(0) for w in wl]
                bk = [b[k].unbind(0) for b in bl]
                for e in range(n_e):
                    if self.activation_name in FUSED_ACTIVATIONS:
                        params = [t for i in range(last + 1) for t in (wk[i][e].t(), bk[i][e].view(-1))]
                        outs.append(fused_mlp(x[k], params, self.activation_name))
                        continue
                    h = x[k]
                    for i in range(last + 1):
                        h = torch.addmm(bk[i][e], h, wk[i][e])
                        h = self.activation(h) if i < last else h
                    outs.append(h)
            return torch.stack(outs).view(self.k, n_e, *outs[0].shape)
        k, e = self.k, n_e
        h = x.unsqueeze(1).expand(k, e, *x.shape[1:]).reshape(k * e, *x.shape[1:])
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.baddbmm(b.flatten(0, 1), h, w.flatten(0, 1))
            h = self.activation(h) if i < last else h
        return h.view(k, e, *h.shape[1:])


def _member_features(encoder: nn.Module | None, obs: Tensor, detach_params: bool = False) -> Tensor:
    """``[K, B, *obs]`` through an encoder that takes ``[B, *obs]`` (K=1 only: a plain run's CNN)."""
    if encoder is None:
        return obs
    flat = obs.flatten(0, 1)
    feats = _call_detached(encoder, flat) if detach_params else encoder(flat)
    return feats.unflatten(0, obs.shape[:2])


class MemberTanhGaussianActor(nn.Module):
    """K :class:`TanhGaussianActor` s as one: ``[K, B, *obs]`` -> (μ, log σ) ``[K, B, A]``."""

    def __init__(self, actors: Sequence[TanhGaussianActor]):
        super().__init__()
        if len(actors) > 1 and actors[0].encoder is not None:
            raise ValueError("MemberTanhGaussianActor: an encoder only for K=1")
        self.encoder = actors[0].encoder
        self.net = MemberMLP.from_mlps([a.net for a in actors])

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(_member_features(self.encoder, obs))[:, 0].chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return tanh_gaussian_sample(*self(obs))

    def mode(self, obs: Tensor) -> Tensor:
        return tanh_gaussian_deterministic(self(obs)[0])


class MemberDeterministicActor(nn.Module):
    """K :class:`DeterministicActor` s as one: ``[K, B, *obs]`` -> μ ``[K, B, A]`` in the unit box."""

    def __init__(self, actors: Sequence[DeterministicActor]):
        super().__init__()
        if len(actors) > 1 and actors[0].encoder is not None:
            raise ValueError("MemberDeterministicActor: an encoder only for K=1")
        self.encoder = actors[0].encoder
        self.net = MemberMLP.from_mlps([a.net for a in actors])

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(_member_features(self.encoder, obs))[:, 0])


class MemberQEnsemble(nn.Module):
    """K :class:`QEnsemble` s of E critics as one: ``[K, B, *obs]``, ``[K, B, A]`` -> ``[K, E, B]``."""

    def __init__(self, critics: Sequence[QEnsemble]):
        super().__init__()
        if len(critics) > 1 and critics[0].encoder is not None:
            raise ValueError("MemberQEnsemble: an encoder only for K=1")
        self.encoder = critics[0].encoder
        self.net = MemberMLP.from_ensembles([c.net for c in critics])

    def forward(self, obs: Tensor, actions: Tensor, detach_params: bool = False, first: int | None = None) -> Tensor:
        """``first``: only each member's first ``first`` critics (``[K, first, B]``)."""
        x = _member_features(self.encoder, obs, detach_params)
        return self.net(torch.cat([x, actions], dim=-1), detach_params, first).squeeze(-1)
