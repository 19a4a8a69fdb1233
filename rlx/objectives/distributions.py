"""Policy distributions as pure functions: tanh-squashed Gaussian (continuous SAC), categorical, and the
independent categoricals / Bernoullis of MultiDiscrete / MultiBinary actions.

Notes (SAC, "Continuous Action Generation"): the actor outputs a mean and a standard deviation, draws
an unbounded Gaussian action, then applies tanh and scaling to respect the action bounds.

Log-prob convention: tanh-Gaussian log-probs are densities of the action in the unit box [-1, 1]^d.
:func:`scale_action` maps that action to the env's Box [low, high], which shifts the density by the
constant −Σ log((high−low)/2); these functions do NOT include it. As in SB3/CleanRL/the SAC paper's
code, the constant is left out: it has no gradient, and the target entropy (e.g. −dim(A)) is then
understood in unit-box units.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def _squash_log_prob(z: Tensor, log_std: Tensor, u: Tensor) -> Tensor:
    # z = (u − mean)/std. log N(u; mean, std) minus log|d tanh(u)/du| = log(1 − tanh(u)²), written as
    # 2(log 2 − u − softplus(−2u)) because 1 − tanh(u)² underflows to 0 (log → −inf) for |u| ≳ 10.
    normal = -0.5 * z.pow(2) - log_std - _HALF_LOG_2PI
    log_det = 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))
    return (normal - log_det).sum(dim=-1)


def tanh_gaussian_log_prob(mean: Tensor, log_std: Tensor, u: Tensor) -> Tensor:
    """log π(a|s) of a = tanh(u) for a pre-squash sample u, summed over the last (action) dim.

    log π(a|s) = Σ_j [log N(u_j; μ_j, σ_j) − log(1 − tanh(u_j)²)] (change of variables through tanh,
    SAC paper appendix C). Taking u rather than a avoids atanh, which is unstable near ±1.
    """
    return _squash_log_prob((u - mean) / log_std.exp(), log_std, u)


def tanh_gaussian_sample(
    mean: Tensor,
    log_std: Tensor,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Reparameterized sample a = tanh(μ + σ·ε), ε ~ N(0, I), and its log-prob ``[..., d] -> [..., d], [...]``.

    Notes eq. a_t = f_φ(ε_t; s_t) (reparameterization trick), squashed by tanh: gradients flow to
    ``mean`` and ``log_std`` through both the action and the log-prob. ``noise`` is a pre-drawn ε
    (standard normal); otherwise it is drawn with ``generator``. Clamp ``log_std`` in the network.
    """
    if noise is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    u = mean + log_std.exp() * noise
    # (u − mean)/std is ε exactly, so use it directly rather than recompute it with rounding error.
    return torch.tanh(u), _squash_log_prob(noise, log_std, u)


def tanh_gaussian_deterministic(mean: Tensor) -> Tensor:
    """Deterministic (evaluation) action tanh(μ), the squashed mean of the Gaussian."""
    return torch.tanh(mean)


def scale_action(a_in_unit_box: Tensor, low: float | Tensor, high: float | Tensor) -> Tensor:
    """Affine map [-1, 1] → [low, high]: low + (a + 1)(high − low)/2.

    Bounds must be finite; log-probs are not adjusted (see module docstring).
    """
    low_t, high_t = _bounds(a_in_unit_box, low, high)
    return low_t + 0.5 * (a_in_unit_box + 1.0) * (high_t - low_t)


def unscale_action(a: Tensor, low: float | Tensor, high: float | Tensor) -> Tensor:
    """Inverse of :func:`scale_action`, [low, high] → [-1, 1]: 2(a − low)/(high − low) − 1."""
    low_t, high_t = _bounds(a, low, high)
    return 2.0 * (a - low_t) / (high_t - low_t) - 1.0


def _bounds(like: Tensor, low: float | Tensor, high: float | Tensor) -> tuple[Tensor, Tensor]:
    # Accepts gymnasium Box bounds (numpy arrays) as well as floats/tensors.
    return (
        torch.as_tensor(low, dtype=like.dtype, device=like.device),
        torch.as_tensor(high, dtype=like.dtype, device=like.device),
    )


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of the diagonal Gaussian N(μ, σ²) before squashing, Σ_j (log σ_j + ½ log(2πe)), ``[..., d] -> [...]``.

    The notes (SAC, "Continuous Action Generation"): "the agent uses the unbounded Gaussian distribution
    to calculate the entropy of the policy" (the tanh-squashed density has no closed-form entropy).
    """
    return (log_std + 0.5 + _HALF_LOG_2PI).sum(dim=-1)


def categorical_probs_log_probs(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(π(·|s), log π(·|s)) from logits over the last dim, via softmax/log_softmax (no log of a softmax)."""
    return torch.softmax(logits, dim=-1), torch.log_softmax(logits, dim=-1)


# --- structured discrete actions: D independent sub-actions (MultiDiscrete, MultiBinary) ------------

def multi_categorical_log_probs(logits: Tensor, nvec: Sequence[int]) -> Tensor:
    """log π_j(·|s) of D independent categoricals, one per sub-action j with n_j choices,
    ``[..., Σ_j n_j] -> [..., D, max_j n_j]``: log π_j(·|s) = log_softmax(l_j(s)) over sub-action j's own n_j
    logits (the j-th slice of the last dim).

    Sub-actions with fewer than max_j n_j choices are padded with the dtype's most negative finite number
    (not −inf): a padded choice then has probability exactly 0, is never the arg max of Gumbel-max sampling,
    and contributes π log π = 0 · (−3.4e38) = 0 to the entropy and 0 to its gradient, with no mask and no NaN.
    """
    sizes = [int(n) for n in nvec]
    if len(set(sizes)) == 1:  # equal sizes (the common case): one reshape, no padding
        return torch.log_softmax(logits.unflatten(-1, (len(sizes), sizes[0])), dim=-1)
    widest = max(sizes)
    pad = torch.finfo(logits.dtype).min
    parts = [F.pad(part, (0, widest - n), value=pad) for part, n in zip(logits.split(sizes, dim=-1), sizes, strict=True)]
    return torch.log_softmax(torch.stack(parts, dim=-2), dim=-1)


def multi_categorical_log_prob(log_probs: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) = Σ_j log π_j(a_j|s) of the joint action a = (a_1, ..., a_D), ``[..., D, M], [..., D] -> [...]``
    (``log_probs`` from :func:`multi_categorical_log_probs`)."""
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1).sum(-1)


def multi_categorical_entropy(log_probs: Tensor) -> Tensor:
    """H[π(·|s)] = Σ_j H[π_j] = −Σ_j Σ_a π_j(a|s) log π_j(a|s) (independent sub-actions: entropies add),
    ``[..., D, M] -> [...]``."""
    return -(log_probs.exp() * log_probs).sum((-2, -1))


def bernoulli_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) of D independent Bernoullis p_j = σ(l_j(s)), a_j ∈ {0, 1}, ``[..., D], [..., D] -> [...]``:

    log π(a|s) = Σ_j [a_j log σ(l_j) + (1 − a_j) log σ(−l_j)] = Σ_j [a_j l_j − softplus(l_j)]
    (log σ(l) = l − softplus(l), log σ(−l) = −softplus(l); no log of a probability that may underflow)."""
    return (actions.to(logits.dtype) * logits - F.softplus(logits)).sum(-1)


def bernoulli_entropy(logits: Tensor) -> Tensor:
    """H[π(·|s)] = Σ_j H[Bernoulli(σ(l_j))] = Σ_j [softplus(l_j) − σ(l_j) l_j], ``[..., D] -> [...]``

    (−p log p − (1 − p) log(1 − p) with log p = −softplus(−l), log(1 − p) = −softplus(l) and
    softplus(−l) = softplus(l) − l)."""
    return (F.softplus(logits) - torch.sigmoid(logits) * logits).sum(-1)
