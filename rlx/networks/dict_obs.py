"""Dict observations (issue 26): a gymnasium ``Dict`` of ``Box`` values, packed into one flat float32 vector.

An env whose observation space is a ``Dict`` is wrapped in :class:`rlx.envs.make.PackDictObs`, which turns
each observation into ONE float32 vector: the values of the Dict's keys flattened and concatenated in the
space's key order (gymnasium sorts a plain dict's keys). Its observation space is :class:`PackedDict`, a flat
``Box`` that carries the :class:`DictLayout` (each key's shape, dtype and offset). Everything that only moves
observations around (the vector env, the loop, NaN checks, the loop state in checkpoints, a population's
member split, evaluation, ``rlx eval``) handles that vector as any other; uint8 pixels are exact in float32.

Two places see the dict itself:

- storage (:class:`rlx.buffers.rollout.RolloutBuffer`): one array per key, image keys (uint8/bool Boxes) as
  uint8, the others float32; the rollout hands the update a dict of per-key tensors;
- the encoder (:class:`rlx.networks.encoders.DictEncoder`): it takes either form (the packed vector while
  acting, the stored dict in an update) and encodes each chosen key on its own (``network.dict_keys``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

Obs = Tensor | dict[str, Tensor]  # an observation batch: one tensor, or (a Dict space's storage) one per key


@dataclass(frozen=True)
class DictKey:
    """One key of a Dict observation space: its Box, and where its values sit in the packed vector."""

    name: str
    space: gym.spaces.Box
    offset: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.space.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def uint8(self) -> bool:
        """Stored as uint8 (images: uint8 and bool Boxes); exact through the float32 packing."""
        return self.space.dtype in (np.uint8, np.bool_)

    @property
    def is_image(self) -> bool:
        """A ``(C, H, W)`` key: a CNN encoder (``network.encoder``) encodes it; vectors are taken as they are."""
        return len(self.shape) == 3


class DictLayout:
    """The keys of a Dict observation space (values: Box) in the packed vector's order."""

    def __init__(self, space: gym.spaces.Dict):
        keys, offset = [], 0
        for name, sub in space.spaces.items():
            if not isinstance(sub, gym.spaces.Box):
                raise TypeError(f"key {name!r} is {sub}")
            keys.append(DictKey(str(name), sub, offset))
            offset += keys[-1].size
        self.keys: tuple[DictKey, ...] = tuple(keys)
        self.by_name = {k.name: k for k in self.keys}
        self.size = offset
        self.space = space

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def pack(self, obs: Mapping[str, Any]) -> np.ndarray:
        """One env's Dict observation -> ``[size]`` float32."""
        return np.concatenate([np.asarray(obs[k.name], dtype=np.float32).reshape(-1) for k in self.keys])

    def unpack(self, x: Tensor) -> dict[str, Tensor]:
        """``[*lead, size]`` packed -> per key ``[*lead, *shape]`` (views, the packed dtype)."""
        lead = x.shape[:-1]
        return {k.name: x[..., k.offset: k.offset + k.size].reshape(*lead, *k.shape) for k in self.keys}

    def unpack_numpy(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`unpack` of a NumPy batch, uint8 keys cast back to uint8 (exact: the packing kept the integers)."""
        lead = x.shape[:-1]
        return {k.name: x[..., k.offset: k.offset + k.size].reshape(*lead, *k.shape).astype(np.uint8 if k.uint8 else np.float32)
                for k in self.keys}

    def torch_dtype(self, name: str) -> torch.dtype:
        return torch.uint8 if self.by_name[name].uint8 else torch.float32

    def keep_mask(self) -> np.ndarray:
        """``[size]`` bool: True on the entries of uint8/bool keys (images), which observation normalization
        leaves as they are (the encoder scales pixels by 1/255 itself); False on the float keys'."""
        mask = np.zeros(self.size, dtype=bool)
        for k in self.keys:
            mask[k.offset: k.offset + k.size] = k.uint8
        return mask


class PackedDict(gym.spaces.Box):
    """The packed vector's space: a flat float32 Box (each key's bounds, flattened and concatenated) that
    carries the Dict's :class:`DictLayout` (``layout``)."""

    def __init__(self, space: gym.spaces.Dict):
        layout = DictLayout(space)
        low = np.concatenate([np.asarray(k.space.low, dtype=np.float32).reshape(-1) for k in layout.keys])
        high = np.concatenate([np.asarray(k.space.high, dtype=np.float32).reshape(-1) for k in layout.keys])
        super().__init__(low, high, dtype=np.float32)
        self.layout = layout

    def __repr__(self) -> str:
        return f"PackedDict({self.layout.space})"


def dict_layout(space: Any) -> DictLayout | None:
    """The layout of a packed Dict observation space; None for any other space."""
    return space.layout if isinstance(space, PackedDict) else None


def obs_map(fn: Callable[[Tensor], Tensor], x: Obs) -> Obs:
    """``fn`` applied to an observation batch: to the tensor, or to each key's tensor of a dict."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)

