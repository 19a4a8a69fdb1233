"""Preallocated on-policy rollout storage, shaped [T, N, ...] for T steps of N parallel envs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Rollout:
    """One on-policy batch. ``next_values[t]`` is V(s_{t+1}) of the state step t actually reached:
    the final observation for an episode that ended at t (so truncation bootstraps), the
    following observation otherwise, and the bootstrap value after the last step."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    rewards: Tensor
    terminated: Tensor
    done: Tensor
    next_values: Tensor

    def flat(self, *names: str) -> list[Tensor]:
        """The named fields with the [T, N] axes merged, for minibatching."""
        out = []
        for name in names:
            x = getattr(self, name)
            out.append(x.reshape(-1, *x.shape[2:]))
        return out


class RolloutBuffer:
    """Fills a :class:`Rollout` step by step without reallocating; one instance per run."""

    def __init__(self, n_steps: int, n_envs: int, obs_shape: tuple, action_shape: tuple, action_dtype: torch.dtype, device: torch.device):
        self.n_steps, self.n_envs = n_steps, n_envs
        z = lambda *shape, dtype=torch.float32: torch.zeros((n_steps, n_envs, *shape), dtype=dtype, device=device)
        self.data = Rollout(
            obs=z(*obs_shape),
            actions=z(*action_shape, dtype=action_dtype),
            log_probs=z(),
            values=z(),
            rewards=z(),
            terminated=z(),
            done=z(),
            next_values=z(),
        )
        self.t = 0

    def add(self, obs: Tensor, actions: Tensor, log_probs: Tensor, values: Tensor, rewards: Tensor, terminated: Tensor, done: Tensor) -> None:
        d, t = self.data, self.t
        d.obs[t] = obs
        d.actions[t] = actions
        d.log_probs[t] = log_probs
        d.values[t] = values
        d.rewards[t] = rewards
        d.terminated[t] = terminated
        d.done[t] = done
        self.t += 1

    @property
    def full(self) -> bool:
        return self.t == self.n_steps

    def finish(self, last_values: Tensor, final_values: Tensor | None = None) -> Rollout:
        """Fill ``next_values`` and hand out the rollout; the buffer is reusable afterwards.

        ``final_values`` is a [T, N] tensor of V(final observation) valid where ``done`` is set.
        """
        d = self.data
        d.next_values[:-1] = d.values[1:]
        d.next_values[-1] = last_values
        if final_values is not None:
            d.next_values = torch.where(d.done.bool(), final_values, d.next_values)
        self.t = 0
        return d
