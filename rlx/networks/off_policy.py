"""Actor and critic heads of the off-policy family: tanh-Gaussian and deterministic actors, Q ensembles.

Actors work in the unit box [-1, 1]^d; the algorithm maps to the env's Box with ``scale_action``.
Initialization is PyTorch's ``nn.Linear`` default, as in SB3's SAC/TD3/DDPG, for like-for-like runs.
Each module optionally owns an observation ``encoder`` (:mod:`rlx.networks.encoders`; ``obs_dim`` is then
its feature width): the actor its own, a critic ensemble one for all its members (as SB3's critics).
"""
from __future__ import annotations

from typing import Sequence, cast

import torch
from torch import Tensor, nn

from rlx.networks.ensemble import EnsembleMLP
from rlx.networks.heads import MemberNoise, ValueNet
from rlx.networks.mlp import mlp
from rlx.networks.stacked import MemberMLP
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


def has_weights(module: nn.Module | None) -> bool:
    """Whether ``module`` has parameters: a weightless encoder (a Dict of vector keys: unpack and concatenate,
    a ``Flatten``) is the same function for every member, so a population shares it."""
    return module is not None and any(True for _ in module.parameters())


def _member_features(encoder: nn.Module | None, obs: Tensor, detach_params: bool = False) -> Tensor:
    """``[K, B, *obs]`` through an encoder that takes ``[B, *obs]`` (a plain run's CNN; for K > 1 a weightless
    one only)."""
    if encoder is None:
        return obs
    flat = obs.flatten(0, 1)
    feats = _call_detached(encoder, flat) if detach_params else encoder(flat)
    return feats.unflatten(0, obs.shape[:2])


class MemberTanhGaussianActor(nn.Module):
    """K :class:`TanhGaussianActor` s as one: ``[K, B, *obs]`` -> (μ, log σ) ``[K, B, A]``."""

    def __init__(self, actors: Sequence[TanhGaussianActor]):
        super().__init__()
        if len(actors) > 1 and has_weights(actors[0].encoder):
            raise ValueError("MemberTanhGaussianActor: an encoder with weights only for K=1")
        self.encoder = actors[0].encoder
        self.net = MemberMLP.from_mlps([a.net for a in actors])

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(_member_features(self.encoder, obs))[:, 0].chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor, random: MemberNoise | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """tanh(μ + σ ε); ``random``: ε from member k's own stream for row k (else torch's global RNG);
        ``noise``: ε drawn before (``[K, B, A]``)."""
        mean, log_std = self(obs)
        if noise is None and random is not None:
            noise = random.normal_like(mean)
        return tanh_gaussian_sample(mean, log_std, noise=noise)

    def mode(self, obs: Tensor) -> Tensor:
        return tanh_gaussian_deterministic(self(obs)[0])


class MemberDeterministicActor(nn.Module):
    """K :class:`DeterministicActor` s as one: ``[K, B, *obs]`` -> μ ``[K, B, A]`` in the unit box."""

    def __init__(self, actors: Sequence[DeterministicActor]):
        super().__init__()
        if len(actors) > 1 and has_weights(actors[0].encoder):
            raise ValueError("MemberDeterministicActor: an encoder with weights only for K=1")
        self.encoder = actors[0].encoder
        self.net = MemberMLP.from_mlps([a.net for a in actors])

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(_member_features(self.encoder, obs))[:, 0])


class MemberQEnsemble(nn.Module):
    """K :class:`QEnsemble` s of E critics as one: ``[K, B, *obs]``, ``[K, B, A]`` -> ``[K, E, B]``."""

    def __init__(self, critics: Sequence[QEnsemble]):
        super().__init__()
        if len(critics) > 1 and has_weights(critics[0].encoder):
            raise ValueError("MemberQEnsemble: an encoder with weights only for K=1")
        self.encoder = critics[0].encoder
        self.net = MemberMLP.from_ensembles([c.net for c in critics])

    def forward(self, obs: Tensor, actions: Tensor, detach_params: bool = False, first: int | None = None) -> Tensor:
        """``first``: only each member's first ``first`` critics (``[K, first, B]``)."""
        x = _member_features(self.encoder, obs, detach_params)
        return self.net(torch.cat([x, actions], dim=-1), detach_params, first).squeeze(-1)


class MemberValueNet(nn.Module):
    """K :class:`~rlx.networks.heads.ValueNet` s as one: ``[K, B, *obs]`` -> V(s) ``[K, B]`` (SAC-V's soft value)."""

    def __init__(self, values: Sequence[ValueNet]):
        super().__init__()
        if len(values) > 1 and has_weights(values[0].encoder):
            raise ValueError("MemberValueNet: an encoder with weights only for K=1")
        self.encoder = values[0].encoder
        self.net = MemberMLP.from_mlps([cast(nn.Sequential, v.net) for v in values])  # ValueNet's is an MLP

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(_member_features(self.encoder, obs))[:, 0, :, 0]


class MemberCategoricalActor(nn.Module):
    """K :class:`CategoricalActor` s as one: ``[K, B, *obs]`` -> logits of π(·|s) ``[K, B, A]`` (discrete SAC)."""

    def __init__(self, actors: Sequence[CategoricalActor]):
        super().__init__()
        if len(actors) > 1 and has_weights(actors[0].encoder):
            raise ValueError("MemberCategoricalActor: an encoder with weights only for K=1")
        self.encoder = actors[0].encoder
        self.net = MemberMLP.from_mlps([a.net for a in actors])

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(_member_features(self.encoder, obs))[:, 0]

    def sample(self, obs: Tensor, random: MemberNoise) -> Tensor:
        """a ~ π(·|s) ``[K, B]`` by the Gumbel-max draw argmax(logits + g), g from member k's own stream for row k."""
        logits = self(obs)
        return (torch.log_softmax(logits, dim=-1) + random.gumbel_like(logits)).argmax(-1)

    def mode(self, obs: Tensor) -> Tensor:
        return self(obs).argmax(-1)


class MemberDiscreteQEnsemble(nn.Module):
    """K :class:`DiscreteQEnsemble` s of E critics as one: ``[K, B, *obs]`` -> Q_i(s, ·) ``[K, E, B, A]``."""

    def __init__(self, critics: Sequence[DiscreteQEnsemble]):
        super().__init__()
        if len(critics) > 1 and has_weights(critics[0].encoder):
            raise ValueError("MemberDiscreteQEnsemble: an encoder with weights only for K=1")
        self.encoder = critics[0].encoder
        self.net = MemberMLP.from_ensembles([c.net for c in critics])

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(_member_features(self.encoder, obs))
