"""Returns and advantages: pure tensor-in/tensor-out functions (notes, "Actor_Critic" section).

Shapes: time is the leading dimension, ``[T]`` or ``[T, N]`` for N parallel envs. ``done`` marks the
last step of an episode (terminated OR truncated); ``terminated`` marks a true terminal state whose
value is zero. A time-limit truncation is ``done`` but not ``terminated``: the return is cut there,
yet the value of the state reached is still bootstrapped.
"""
from __future__ import annotations

import torch
from torch import Tensor


def reward_to_go(rewards: Tensor, done: Tensor, gamma: float | Tensor, bootstrap: Tensor | None = None) -> Tensor:
    """Discounted reward-to-go, the "causality trick": G_t = sum_{t'>=t} gamma^(t'-t) r_t'.

    Restarts at episode boundaries (``done``). ``bootstrap`` is the value of the state after the last
    step, added (discounted) for an episode the rollout cut off before it ended; zero if omitted.
    ``gamma`` may be a tensor broadcasting against one step's ``rewards[t]`` (``[L, K]`` batches of K
    members with ``[K]`` discounts).
    """
    returns = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0]) if bootstrap is None else bootstrap.to(rewards.dtype)
    not_done = 1.0 - done.to(rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * not_done[t] * running
        returns[t] = running
    return returns


def td_error(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float | Tensor) -> Tensor:
    """One-step TD error, the advantage estimate A(s,a) = r + gamma V(s') - V(s) (zero V(s') if terminal)."""
    return rewards + gamma * (1.0 - terminated.to(rewards.dtype)) * next_values - values


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float | Tensor,
    lam: float | Tensor,
) -> Tensor:
    """Generalized Advantage Estimation (notes: A^GAE = sum_k lambda^(k-1) A^(k), normalized weights).

    Computed with the equivalent recursion A_t = delta_t + gamma*lambda*(1 - done_t)*A_{t+1}, where
    delta_t is the TD error. ``next_values[t]`` is V(s_{t+1}) of the state the step actually reached
    (the final observation when the episode ended there), so truncated episodes bootstrap correctly.
    lambda=0 gives the one-step TD error; lambda=1 gives discounted returns minus V(s_t).
    ``gamma``/``lam`` may be tensors broadcasting against one step's ``rewards[t]`` (a population's
    ``[T, K, N]`` rollout with ``[K, 1]`` values: each member's own discount and lambda).
    """
    deltas = td_error(rewards, values, next_values, terminated, gamma)
    not_done = 1.0 - done.to(rewards.dtype)
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages


def episode_returns(
    rewards: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor, gamma: float | Tensor
) -> Tensor:
    """Monte-Carlo reward-to-go of complete episodes (the causality trick), truncation-aware.

    Every episode in the batch must end with ``done``. A time-limit truncation is not a terminal state:
    gamma * V(final obs) (``next_values`` there) is folded into its last reward before the reward-to-go,
    so G_t = sum_{t'=t}^{T} gamma^(t'-t) r_t' + gamma^(T+1-t) V(s_{T+1}); with zero ``next_values`` it
    is the plain reward-to-go of the observed segment. Time is the leading dim; ``gamma`` as in
    :func:`reward_to_go`.
    """
    truncated = done.to(rewards.dtype) * (1.0 - terminated.to(rewards.dtype))
    return reward_to_go(rewards + gamma * truncated * next_values, done, gamma)
