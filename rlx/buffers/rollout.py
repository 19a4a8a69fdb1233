"""Preallocated on-policy rollout storage, shaped [T, N, ...] for T steps of N parallel envs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rlx.networks.dict_obs import DictLayout, Obs


@dataclass
class Rollout:
    """One on-policy batch. ``next_values[t]`` is V(s_{t+1}) of the state step t actually reached:
    the final observation for an episode that ended at t (so truncation bootstraps), the
    following observation otherwise, and the bootstrap value after the last step. ``obs``: one tensor, or
    for a Dict observation space one per key (:mod:`rlx.networks.dict_obs`)."""

    obs: Obs
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
            if isinstance(x, dict):
                raise TypeError(f"Rollout.flat({name!r}): a Dict observation's per-key tensors")
            out.append(x.reshape(-1, *x.shape[2:]))
        return out


class RolloutBuffer:
    """Fills a :class:`Rollout` step by step without reallocating; one instance per run.

    What the env returns (observations, rewards, termination flags) is staged in NumPy arrays and
    copied to the device once per rollout (one copy per field instead of a conversion and, on a GPU,
    a host-to-device transfer per field and step); what the policy returns is already on the device."""

    def __init__(self, n_steps: int, n_envs: int, obs_shape: tuple, action_shape: tuple, action_dtype: torch.dtype,
                 device: torch.device, obs_dtype: torch.dtype = torch.float32, obs_layout: DictLayout | None = None):
        """``obs_dtype``: torch.uint8 for image observations (uint8/bool), stored as the env returns them
        (a quarter of float32's bytes; the network scales pixels itself). ``obs_layout``: a packed Dict
        observation's layout (:class:`~rlx.networks.dict_obs.DictLayout`): the packed vectors ``add`` takes are
        stored as one array per key, image keys as uint8 (``obs_dtype`` unused), and the rollout's ``obs`` is
        that dict of ``[T, N, *shape]`` tensors."""
        self.n_steps, self.n_envs, self.layout = n_steps, n_envs, obs_layout

        def z(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros((n_steps, n_envs, *shape), dtype=dtype, device=device)

        obs: Obs = z(*obs_shape, dtype=obs_dtype) if obs_layout is None else \
            {k.name: z(*k.shape, dtype=obs_layout.torch_dtype(k.name)) for k in obs_layout.keys}
        self.data = Rollout(
            obs=obs,
            actions=z(*action_shape, dtype=action_dtype),
            log_probs=z(),
            values=z(),
            rewards=z(),
            terminated=z(),
            done=z(),
            next_values=z(),
        )
        self.staged = {name: np.zeros((n_steps, n_envs, *shape), dtype=np.uint8 if name == "obs" and obs_dtype == torch.uint8
                                      else np.float32)
                       for name, shape in (("obs", obs_shape), ("rewards", ()), ("terminated", ()), ("done", ()))}
        if obs_layout is not None:
            del self.staged["obs"]
        # a Dict observation's keys, staged as they are stored
        self.staged_obs = {} if obs_layout is None else \
            {k.name: np.zeros((n_steps, n_envs, *k.shape), dtype=np.uint8 if k.uint8 else np.float32) for k in obs_layout.keys}
        self.t = 0

    def add(self, obs: np.ndarray, actions: Tensor, log_probs: Tensor, values: Tensor, rewards: np.ndarray,
            terminated: np.ndarray, done: np.ndarray) -> None:
        """One step of N envs: the env's arrays as NumPy, the policy's outputs as tensors."""
        d, st, t = self.data, self.staged, self.t
        if self.layout is None:
            st["obs"][t] = obs
        else:  # the packed vectors -> per key (uint8 keys exact: packing and normalization keep their integers)
            for name, part in self.layout.unpack_numpy(np.asarray(obs)).items():
                self.staged_obs[name][t] = part
        st["rewards"][t] = rewards
        st["terminated"][t] = terminated
        st["done"][t] = done
        d.actions[t] = actions
        d.log_probs[t] = log_probs
        d.values[t] = values
        self.t += 1

    def finish(self, last_values: Tensor, final_values: Tensor | None = None) -> Rollout:
        """Fill ``next_values`` and hand out the rollout; the buffer is reusable afterwards.

        ``final_values`` is a [T, N] tensor of V(final observation) valid where ``done`` is set.
        """
        d = self.data
        for name, array in self.staged.items():
            getattr(d, name).copy_(torch.from_numpy(array))
        if isinstance(d.obs, dict):
            for name, array in self.staged_obs.items():
                d.obs[name].copy_(torch.from_numpy(array))
        d.next_values[:-1] = d.values[1:]
        d.next_values[-1] = last_values
        if final_values is not None:
            d.next_values = torch.where(d.done.bool(), final_values, d.next_values)
        self.t = 0
        return d
