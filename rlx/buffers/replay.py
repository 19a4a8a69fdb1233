"""Fixed-capacity replay buffer with uniform sampling (notes: DDPG "Experience Replay").

Stores (s, a, r, s', terminated): ``terminated`` only, because a time-limit truncation is not a terminal
state and its target must still bootstrap from V(s'). With gymnasium's same-step autoreset the
observation returned with ``done`` is already the next episode's first one, so ``add`` takes s' of a
finished episode from ``info["final_obs"]``.

All fields live in ONE preallocated float32 tensor, one row per transition; a minibatch is a single
gather (one indexing op for all fields, no per-step Python objects), split into column views.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlx.envs import final_observations


class Transitions(NamedTuple):
    """A sampled minibatch: ``obs``/``next_obs`` ``[B, *obs_shape]``, ``actions`` ``[B, *action_shape]``
    (long for discrete), ``rewards`` and ``terminated`` (0./1.) ``[B]``."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions; the oldest are overwritten first."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, device: torch.device):
        self.capacity, self.device, self.discrete = capacity, device, discrete
        self.obs_shape, self.action_shape = tuple(obs_shape), tuple(action_shape)
        o, a = int(np.prod(obs_shape)), int(np.prod(action_shape))
        # columns: s | a | r | terminated | s'
        self.cols = {"obs": slice(0, o), "actions": slice(o, o + a), "rewards": o + a, "terminated": o + a + 1,
                     "next_obs": slice(o + a + 2, 2 * o + a + 2)}
        # empty, not zeros: pages are only touched as rows are written (a 1e6 buffer costs nothing upfront)
        self.data = torch.empty((capacity, 2 * o + a + 2), dtype=torch.float32, device=device)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, info: dict) -> None:
        """Store one vector-env step (arguments as ``envs.step`` returns them, after ``obs``/``actions``)."""
        n = obs.shape[0]
        reached = final_observations(next_obs, terminated | truncated, info)
        rows = np.concatenate([obs.reshape(n, -1), np.reshape(actions, (n, -1)), np.reshape(rewards, (n, 1)),
                               np.reshape(terminated, (n, 1)), reached.reshape(n, -1)], axis=1, dtype=np.float32)
        rows_t = torch.from_numpy(rows).to(self.device)
        end = self.pos + n
        if end <= self.capacity:
            self.data[self.pos:end] = rows_t
        else:  # wrap around
            first = self.capacity - self.pos
            self.data[self.pos:] = rows_t[:first]
            self.data[: n - first] = rows_t[first:]
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement (torch's global RNG)."""
        rows = self.data[torch.randint(self.size, (batch_size,), device=self.device)]
        c, b = self.cols, batch_size
        actions = rows[:, c["actions"]].reshape(b, *self.action_shape)
        return Transitions(
            obs=rows[:, c["obs"]].reshape(b, *self.obs_shape),
            actions=actions.long() if self.discrete else actions,
            rewards=rows[:, c["rewards"]],
            next_obs=rows[:, c["next_obs"]].reshape(b, *self.obs_shape),
            terminated=rows[:, c["terminated"]],
        )

    # -- persistence (checkpoint.save_buffer) -----------------------------------------------------
    def state_dict(self) -> dict:
        # Only the filled rows, copied: saving a view would serialize the whole preallocated storage.
        return {"data": self.data[: self.size].to("cpu", copy=True), "pos": self.pos, "size": self.size,
                "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        data = state["data"]
        if data.shape[1:] != self.data.shape[1:]:
            raise ValueError(f"replay buffer rows of width {data.shape[1]} do not fit this buffer's {self.data.shape[1]}")
        if state["capacity"] == self.capacity:
            self.data[: state["size"]] = data.to(self.device)
            self.pos, self.size = state["pos"], state["size"]
            return
        # A different capacity (config changed between runs): keep the newest transitions, in order.
        order = torch.cat([data[state["pos"]:], data[: state["pos"]]]) if state["size"] == state["capacity"] else data
        order = order[-self.capacity:]
        self.data[: len(order)] = order.to(self.device)
        self.size, self.pos = len(order), len(order) % self.capacity
