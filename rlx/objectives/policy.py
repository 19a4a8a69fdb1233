"""Policy-gradient and value losses: pure tensor-in/tensor-out functions (notes: PPO, actor-critic)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reinforce_loss(log_prob: Tensor, weights: Tensor) -> Tensor:
    """Policy-gradient surrogate: -mean(log pi(a|s) * w), w = reward-to-go, Q, or an advantage.

    Its gradient is the notes' grad J = 1/N sum grad log pi(a|s) * w; ``weights`` carry no gradient.
    """
    return -(log_prob * weights.detach()).mean()


def probability_ratio(log_prob: Tensor, old_log_prob: Tensor) -> Tensor:
    """r(theta) = pi_theta(a|s) / pi_theta_old(a|s), computed in log space for stability."""
    return torch.exp(log_prob - old_log_prob)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_eps: float | Tensor) -> Tensor:
    """PPO-clip objective per sample: min(r A, clip(r, 1-eps, 1+eps) A) (to be maximized).

    For A > 0 the objective stops growing once r > 1+eps; for A < 0 once r < 1-eps: outside the
    trust region in the direction that helps, the gradient is zero. ``clip_eps`` a number, or a tensor
    that broadcasts against ``ratio`` (a population: ``[K, 1]``, one epsilon per member).
    """
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, torch.as_tensor(1.0 - clip_eps), torch.as_tensor(1.0 + clip_eps)) * advantages
    return torch.minimum(unclipped, clipped)


def value_loss(values: Tensor, targets: Tensor, old_values: Tensor | None = None, clip: float | None = None,
               dim: int | None = None) -> Tensor:
    """Critic regression 0.5 * (V - target)^2; with ``clip``, PPO's pessimistic clipped variant.

    Value clipping keeps V within ``clip`` of its old prediction and takes the larger of the two errors.
    ``dim``: average over that dim only (a population's ``[K, B]``: one loss per member), else over all.
    """
    if clip is None or old_values is None:
        if dim is None:
            return 0.5 * F.mse_loss(values, targets)  # one fused node in the update's graph
        return 0.5 * ((values - targets) ** 2).mean(dim)
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    err = torch.maximum((values - targets) ** 2, (clipped - targets) ** 2)
    return 0.5 * (err.mean() if dim is None else err.mean(dim))


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: int = 1) -> Tensor:
    """Mean along ``dim`` over the samples where ``mask`` is 1 (a padded batch ``[K, L]``: each member's own
    L_k samples; None: all of them). A row without samples gives 0."""
    if mask is None:
        return x.mean(dim)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, dim: int = 1, keepdim: bool = False) -> Tensor:
    """Unbiased variance sum_i m_i (x_i - mean)^2 / (n - 1) along ``dim`` over the masked samples (n of them),
    as ``Tensor.var`` of each row's own samples (0 where n < 2)."""
    n = mask.sum(dim, keepdim=True)
    centred = (x - (x * mask).sum(dim, keepdim=True) / n.clamp(min=1)) * mask
    var = (centred ** 2).sum(dim, keepdim=True) / (n - 1).clamp(min=1)
    return var if keepdim else var.squeeze(dim)


def normalize(x: Tensor, eps: float = 1e-8, dim: int | None = None, mask: Tensor | None = None) -> Tensor:
    """Zero-mean, unit-std (advantage normalization); a single element is only centred. ``dim``: along
    that dim only (a population's ``[K, B]`` advantages: each member's own statistics); ``mask`` (with
    ``dim``): over each row's masked samples only (a padded batch; the padding comes out 0)."""
    if mask is not None:
        dim = 1 if dim is None else dim
        n = mask.sum(dim, keepdim=True)
        centred = (x - (x * mask).sum(dim, keepdim=True) / n.clamp(min=1)) * mask
        std = masked_var(x, mask, dim, keepdim=True).sqrt()
        return torch.where(n < 2, centred, centred / (std + eps))
    if dim is not None:
        mean = x.mean(dim, keepdim=True)
        if x.shape[dim] < 2:
            return x - mean
        return (x - mean) / (x.std(dim, keepdim=True) + eps)
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def explained_variance(pred: Tensor, target: Tensor, dim: int | None = None, mask: Tensor | None = None) -> Tensor:
    """1 - Var[target - pred] / Var[target]: 1 is a perfect critic, 0 no better than a constant.
    ``dim``: one value per row along it (a population's ``[K, B]``); ``mask`` (with ``dim``): over each
    row's masked samples only (a padded batch)."""
    if mask is not None:
        dim = 1 if dim is None else dim
        var, resid = masked_var(target, mask, dim), masked_var(target - pred, mask, dim)
    else:
        var = target.var() if dim is None else target.var(dim)
        resid = (target - pred).var() if dim is None else (target - pred).var(dim)
    return torch.where(var == 0, torch.full_like(var, float("nan")), 1 - resid / var)


def approx_kl_from_ratio(ratio: Tensor, dim: int | None = None) -> Tensor:
    """Low-variance estimator of KL(pi_old || pi): E[(r - 1) - log r] (Schulman's k3), from the
    probability ratios r = pi / pi_old (``dim``: the mean along it only)."""
    k3 = (ratio - 1) - torch.log(ratio)
    return k3.mean() if dim is None else k3.mean(dim)


def approx_kl(log_prob: Tensor, old_log_prob: Tensor) -> Tensor:
    """:func:`approx_kl_from_ratio` from log-probabilities."""
    return approx_kl_from_ratio(probability_ratio(log_prob, old_log_prob))
