"""Off-policy critic targets, actor losses and target-network updates (notes: DDPG, SAC sections).

Pure tensor-in/tensor-out functions: no config, no state. Batched quantities are ``[B]`` (one value per
transition) or ``[B, A]`` for per-action values in the discrete case; the per-transition tensors passed
to one function must share a shape (a ``[B, 1]`` critic output next to a ``[B]`` reward would otherwise
broadcast silently to ``[B, B]``), so squeeze critic outputs first.

``terminated`` marks a true terminal state, whose value is zero. A time-limit truncation is NOT
terminal: the state reached still has a value, so pass ``terminated`` (not ``terminated | truncated``)
and the target keeps bootstrapping there.

Targets are not detached here; compute them under ``torch.no_grad()``. Temperatures ``alpha`` passed
as tensors ARE detached: alpha is learned only through the temperature loss.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch (would broadcast silently): {shapes}")


def _coef(alpha: float | Tensor) -> float | Tensor:
    return alpha.detach() if isinstance(alpha, Tensor) else alpha


def _not_terminal(terminated: Tensor, like: Tensor) -> Tensor:
    return 1.0 - terminated.to(like.dtype)


# --------------------------------------------------------------------------------------------------
# Critic targets
# --------------------------------------------------------------------------------------------------


def bellman_target(reward: Tensor, next_q: Tensor, terminated: Tensor, gamma: float | Tensor) -> Tensor:
    """One-step Bellman target y = r + γ(1−d)·Q'(s', a').

    DDPG critic target, notes eq. y_i = r_i + γ Q'(s_{i+1}, μ'(s_{i+1}|θ^μ')|θ^Q') with ``next_q`` the
    target critic at the target policy's action; also SAC-with-V's Q̂ = r + γ V_ψ̄(s') with ``next_q``
    the target value V_ψ̄(s'). d is ``terminated`` only (a truncated step still bootstraps).
    ``gamma`` may be a per-transition tensor (e.g. γ^n for n-step transitions).
    """
    _check_same_shape(reward=reward, next_q=next_q, terminated=terminated)
    return reward + gamma * _not_terminal(terminated, reward) * next_q


def clipped_double_q_target(
    reward: Tensor, next_q1: Tensor, next_q2: Tensor, terminated: Tensor, gamma: float | Tensor
) -> Tensor:
    """TD3 clipped double-Q target y = r + γ(1−d)·min(Q'_1(s', ã'), Q'_2(s', ã')).

    Taking the minimum of the twin target critics counters the over-estimation the notes attribute to
    DDPG; ã' is usually :func:`td3_smoothed_target_action`.
    """
    _check_same_shape(next_q1=next_q1, next_q2=next_q2)
    return bellman_target(reward, torch.minimum(next_q1, next_q2), terminated, gamma)


def soft_bellman_target(
    reward: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    terminated: Tensor,
    gamma: float | Tensor,
    alpha: float | Tensor,
) -> Tensor:
    """SAC soft Bellman target y = r + γ(1−d)(Q'(s', a') − α log π(a'|s')), a' ~ π(·|s').

    Notes eq. T^π Q(s_t, a_t) = r + γ E_{s', a'~π}[Q(s', a') − log π(a'|s')], with the temperature α
    made explicit. ``next_q`` may already be the min over twin target critics.
    """
    _check_same_shape(reward=reward, next_q=next_q, next_log_prob=next_log_prob, terminated=terminated)
    next_v = soft_value_target(next_q, next_log_prob, alpha)
    return bellman_target(reward, next_v, terminated, gamma)


def soft_value_target(q: Tensor, log_prob: Tensor, alpha: float | Tensor) -> Tensor:
    """Soft state value V(s) ≈ Q(s, a) − α log π(a|s) with a ~ π(·|s) (one-sample estimate).

    Target of the SAC value network, notes eq. J_V(ψ) = E[½(V_ψ(s) − E_{a~π}[Q_θ(s, a) − log π_φ(a|s)])²];
    the actions must come from the current policy, not the replay buffer.
    """
    _check_same_shape(q=q, log_prob=log_prob)
    return q - _coef(alpha) * log_prob


def discrete_soft_value(q_values: Tensor, probs: Tensor, log_probs: Tensor, alpha: float | Tensor) -> Tensor:
    """Exact discrete soft value V(s) = Σ_a π(a|s)(Q(s, a) − α log π(a|s)), ``[B, A] -> [B]``.

    Notes eq. V(s_t) = E_{a~π}[Q(s_t, a) − log π(a|s_t)] computed as a sum over the finite action set
    instead of a sample (discrete SAC). ``log_probs`` must be finite (log_softmax of finite logits).
    """
    _check_same_shape(q_values=q_values, probs=probs, log_probs=log_probs)
    return (probs * (q_values - _coef(alpha) * log_probs)).sum(dim=-1)


def critic_regression_loss(q: Tensor, target: Tensor) -> Tensor:
    """Σ_k mean_i ½(Q_k(s_i, a_i) − y_i)² for a stack of critics ``q`` ``[K, B]`` (or one critic ``[B]``);
    for a population's ``[M, K, B]`` critics and ``[M, B]`` targets: each member's loss, ``[M]``.

    Notes eq. J_Q(θ) = E_D[½(Q_θ(s_t, a_t) − Q̂(s_t, a_t))²], summed over the twin/ensemble critics that
    share the target y (SB3's SAC critic loss; also the V loss J_V(ψ) with a value estimate for ``q``).
    """
    if q.dim() == 3 and target.dim() == 2 and q.shape[::2] == target.shape:  # a population's: per member
        return 0.5 * (q - target.unsqueeze(1)).pow(2).mean(dim=-1).sum(dim=-1)
    if q.shape[-1:] != target.shape or target.dim() != 1 or q.dim() > 2:
        raise ValueError(f"critic values {tuple(q.shape)} must be [K, B] or [B] for a target of shape [B], got {tuple(target.shape)}")
    return 0.5 * (q - target).pow(2).mean(dim=-1).sum()


# --------------------------------------------------------------------------------------------------
# Target policy smoothing (TD3)
# --------------------------------------------------------------------------------------------------


def td3_smoothed_target_action(
    mu_next: Tensor,
    noise_std: float | Tensor,
    noise_clip: float | Tensor,
    low: float | Tensor,
    high: float | Tensor,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """TD3 target-policy smoothing ã' = clip(μ'(s') + clip(ε, −c, c), low, high), ε ~ N(0, σ²).

    ``noise`` is a pre-drawn ε (already at scale σ, so ``noise_std`` is then unused); otherwise ε is
    drawn here with ``generator``. σ, c and the bounds are in the action units of ``mu_next``; σ and c
    may be tensors that broadcast against ``mu_next`` (a population's ``[K, 1, 1]``: one per member).
    ``low``/``high`` may be per-dimension tensors (or anything ``torch.as_tensor`` accepts).
    """
    if noise is None:
        noise = noise_std * torch.randn(
            mu_next.shape, generator=generator, dtype=mu_next.dtype, device=mu_next.device
        )
    elif noise.shape != mu_next.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != mu_next shape {tuple(mu_next.shape)}")
    low_t = torch.as_tensor(low, dtype=mu_next.dtype, device=mu_next.device)
    high_t = torch.as_tensor(high, dtype=mu_next.dtype, device=mu_next.device)
    clip_t = torch.as_tensor(noise_clip, dtype=mu_next.dtype, device=mu_next.device)
    return torch.clamp(mu_next + noise.clamp(-clip_t, clip_t), low_t, high_t)


# --------------------------------------------------------------------------------------------------
# Actor losses (minimize)
# --------------------------------------------------------------------------------------------------


def ddpg_policy_loss(q: Tensor, dim: int | None = None) -> Tensor:
    """DDPG actor loss −mean_i Q(s_i, μ(s_i)).

    Its gradient is minus the notes' deterministic policy gradient
    ∇_θ J ≈ (1/N) Σ_i ∇_a Q(s, a)|_{a=μ(s_i)} ∇_θ μ(s_i); ``q`` must keep the graph through a = μ(s).
    ``dim``: the mean over that dim only (a population's ``[K, B]`` -> ``[K]``).
    """
    return -q.mean() if dim is None else -q.mean(dim)


def offpolicy_ac_policy_loss(log_prob: Tensor, q: Tensor, dim: int | None = None) -> Tensor:
    """Off-policy actor-critic (score-function) loss −mean_i log π(a^π_i|s_i) · Q̂(s_i, a^π_i).

    Notes eq. ∇_θ J ≈ (1/N) Σ_i ∇_θ log π_θ(a^π_i|s_i) Q̂^π(s_i, a^π_i), with a^π_i freshly sampled
    from the current policy (not the buffer action). Q̂ is detached: it is a weight, not a path.
    ``dim``: the mean over every dim from ``dim`` on (a population's ``[K, S, B]`` -> ``[K]``).
    """
    _check_same_shape(log_prob=log_prob, q=q)
    loss = -(log_prob * q.detach())
    return loss.mean() if dim is None else loss.flatten(dim).mean(dim)


def leave_one_out_baseline(q: Tensor, dim: int = 0) -> Tensor:
    """For K ≥ 2 samples per state ``[K, B]``: b_k = (Σ_{j≠k} q_j)/(K−1), the mean of the OTHER samples.

    A per-state baseline for score-function gradients that stays unbiased (b_k does not depend on
    sample k), so E[∇log π(a_k|s)(q_k − b_k)] = E[∇log π(a_k|s) q_k]. Used by off-policy actor-critic.
    ``dim``: the samples' dim (a population's ``[M, K, B]``: 1).
    """
    k = q.shape[dim]
    if k < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 samples per state, got {k}")
    return (q.sum(dim=dim, keepdim=True) - q) / (k - 1)


def sac_policy_loss(q: Tensor, log_prob: Tensor, alpha: float | Tensor, dim: int | None = None) -> Tensor:
    """SAC actor loss mean_i(α log π(f(ε_i; s_i)|s_i) − Q(s_i, f(ε_i; s_i))).

    Notes eq. J_π(φ) = E_{s~D, ε~N}[log π_φ(f_φ(ε; s)|s) − Q_θ(s, f_φ(ε; s))] with temperature α;
    ``q`` and ``log_prob`` must come from the same reparameterized (rsample) action. ``dim``: the mean
    over that dim only (a population's ``[K, B]`` -> ``[K]``, with ``alpha`` ``[K, 1]``).
    """
    _check_same_shape(q=q, log_prob=log_prob)
    loss = _coef(alpha) * log_prob - q
    return loss.mean() if dim is None else loss.mean(dim)


def discrete_sac_policy_loss(q_values: Tensor, probs: Tensor, log_probs: Tensor, alpha: float | Tensor,
                             dim: int | None = None) -> Tensor:
    """Discrete SAC actor loss mean_i Σ_a π(a|s_i)(α log π(a|s_i) − Q(s_i, a)).

    The notes' KL(π(·|s) ‖ exp(Q(s,·)/α)/Z) up to a constant, with the expectation over actions taken
    exactly, so no reparameterization is needed. ``q_values`` is detached because it does not depend
    on the policy and its graph would only leak gradients into the critic. ``dim``: the mean over that
    dim only (a population's ``[K, B, A]`` with ``alpha`` ``[K, 1, 1]`` -> ``[K]``).
    """
    _check_same_shape(q_values=q_values, probs=probs, log_probs=log_probs)
    loss = (probs * (_coef(alpha) * log_probs - q_values.detach())).sum(dim=-1)
    return loss.mean() if dim is None else loss.mean(dim)


# --------------------------------------------------------------------------------------------------
# Temperature (entropy coefficient) losses
# --------------------------------------------------------------------------------------------------


def sac_temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float | Tensor, dim: int | None = None) -> Tensor:
    """Automatic entropy tuning loss −mean_i(log α · (log π(a_i|s_i) + H̄)), a_i ~ π(·|s_i).

    SB3 convention: the loss multiplies log α, not α as in the SAC paper (CleanRL's continuous SAC
    uses α = exp(log α)). Both have the same fixed point E[−log π] = H̄ and the same gradient sign
    (they differ by the positive factor α): ∂L/∂log α = Ĥ − H̄, so when the policy entropy Ĥ is below
    the target H̄ gradient descent raises α. The policy term is detached. ``dim``: the mean over that
    dim only (a population's ``[K, 1]`` log α and ``[K, B]`` log-probs -> ``[K]``).
    """
    loss = -(log_alpha * (log_prob + target_entropy).detach())
    return loss.mean() if dim is None else loss.mean(dim)


def discrete_sac_temperature_loss(
    log_alpha: Tensor, probs: Tensor, log_probs: Tensor, target_entropy: float | Tensor, dim: int | None = None
) -> Tensor:
    """Discrete temperature loss −mean_i(log α · (Σ_a π(a|s_i) log π(a|s_i) + H̄)).

    As :func:`sac_temperature_loss` (SB3 convention), with the entropy taken exactly over the finite
    action set instead of from one sampled action. ``dim``: as there (``[K, 1]`` log α and H̄,
    ``[K, B, A]`` probabilities -> ``[K]``).
    """
    _check_same_shape(probs=probs, log_probs=log_probs)
    neg_entropy = (probs * log_probs).sum(dim=-1)
    loss = -(log_alpha * (neg_entropy + target_entropy).detach())
    return loss.mean() if dim is None else loss.mean(dim)


# --------------------------------------------------------------------------------------------------
# Target networks
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def polyak_update_(target_params: Iterable[Tensor], online_params: Iterable[Tensor], tau: float) -> None:
    """Soft target update θ' ← τθ + (1−τ)θ' in place (notes: θ^Q' ← τθ^Q + (1−τ)θ^Q').

    One fused ``torch._foreach_lerp_`` call over all tensors instead of a Python loop per parameter.
    τ=1 copies exactly and τ=0 leaves θ' unchanged (lerp is exact at its endpoints). Tensors must be
    floating point and pair up in order (e.g. ``target.parameters()``, ``online.parameters()``);
    integer buffers such as BatchNorm's ``num_batches_tracked`` need :func:`hard_update_`.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    targets, onlines = _paired(target_params, online_params)
    if targets:
        torch._foreach_lerp_(targets, onlines, tau)


@torch.no_grad()
def hard_update_(target_params: Iterable[Tensor], online_params: Iterable[Tensor]) -> None:
    """Hard target update θ' ← θ in place (notes: "Periodic Hard Update" θ^- ← θ)."""
    targets, onlines = _paired(target_params, online_params)
    if targets:
        torch._foreach_copy_(targets, onlines)


def _paired(target_params: Iterable[Tensor], online_params: Iterable[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    targets, onlines = list(target_params), list(online_params)
    if len(targets) != len(onlines):
        raise ValueError(f"{len(targets)} target tensors but {len(onlines)} online tensors")
    for i, (t, o) in enumerate(zip(targets, onlines, strict=True)):
        if t.shape != o.shape:
            raise ValueError(f"tensor {i}: target shape {tuple(t.shape)} != online shape {tuple(o.shape)}")
    return targets, onlines
