"""Observation encoders: what turns an observation into the feature vector the heads (policy, V, Q) take.

``network.encoder``:

- ``mlp`` (default): the observation flattened; the heads' MLPs do the rest (vectors, small images).
- ``nature_cnn``: the DQN/Atari CNN (Mnih et al. 2015; SB3's ``NatureCNN``): 32x8x8/4, 64x4x4/2,
  64x3x3/1, then a 512-unit linear layer. For 84x84 frame stacks (at least 36x36).
- ``minatar_cnn``: one 16x3x3/1 conv layer and a 128-unit linear layer (Young & Tian 2019, the MinAtar
  paper's network), for 10x10 MinAtar states.
- ``impala_cnn``: IMPALA's residual network (Espeholt et al. 2018; Procgen baselines): three stages of
  conv 3x3 + max-pool 3x3/2 + two residual blocks (16, 32, 32 channels), then a 256-unit linear layer.

CNN encoders take channel-first ``(C, H, W)`` observations (Atari's frame stack is; MinAtar's
``(H, W, C)`` states go through :class:`rlx.envs.ChannelsFirst`, which its env configs apply).
Pixels (a ``uint8`` Box with high 255) are scaled by 1/255 inside the encoder, so buffers store the
raw bytes and a checkpoint needs no normalizer statistics for them; other dtypes (MinAtar's bool
channels) are cast to float32 unchanged.

Dict observations (a gymnasium ``Dict`` of Boxes, packed by :class:`rlx.envs.make.PackDictObs`;
:mod:`rlx.networks.dict_obs`): :class:`DictEncoder`, one encoder per key of ``network.dict_keys`` (null: all
keys), concatenated: ``network.encoder`` (a CNN) for each ``(C, H, W)`` image key (its own weights), the
values as they are (flattened, float32; pixels scaled by 1/255) for vector keys and, with ``encoder=mlp``,
for image keys too.
"""
from __future__ import annotations

from typing import Callable, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlx.errors import UserError
from rlx.networks.dict_obs import DictLayout, Obs, PackedDict

ENCODERS = ("mlp", "nature_cnn", "minatar_cnn", "impala_cnn")
CNN_ENCODERS = ENCODERS[1:]
MIN_SPATIAL = {"nature_cnn": 36, "minatar_cnn": 3, "impala_cnn": 8}  # smallest H, W each CNN takes


def pixel_scale(space: gym.spaces.Box) -> float | None:
    """1/255 for 8-bit images (a uint8 Box whose high is 255), else None (no scaling)."""
    if space.dtype == np.uint8 and np.all(np.asarray(space.high) == 255):
        return 1.0 / 255.0
    return None


def stores_as_uint8(space: gym.Space) -> bool:
    """Observations that buffers keep as uint8 (1 byte per value instead of 4): uint8 and bool Boxes."""
    return isinstance(space, gym.spaces.Box) and space.dtype in (np.uint8, np.bool_)


class Flatten(nn.Module):
    """``[B, *obs_shape] -> [B, prod(obs_shape)]`` as float32 (scaled by ``scale`` if given)."""

    def __init__(self, obs_shape: tuple[int, ...], scale: float | None):
        super().__init__()
        self.obs_rank, self.scale = len(obs_shape), scale

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float().flatten(start_dim=obs.dim() - self.obs_rank)
        return x * self.scale if self.scale is not None else x


class CNNEncoder(nn.Module):
    """``[B, C, H, W]`` (any leading batch dims) -> ``[B, features]``: 1/255 scaling, conv trunk, linear + ReLU."""

    def __init__(self, trunk: nn.Module, obs_shape: tuple[int, ...], features: int, scale: float | None):
        super().__init__()
        self.scale, self.obs_shape = scale, tuple(obs_shape)
        self.trunk = trunk
        with torch.no_grad():
            n_flat = trunk(torch.zeros(1, *obs_shape)).flatten(1).shape[1]
        self.linear = nn.Linear(n_flat, features)
        self.features = features
        for m in self.modules():  # SB3/CleanRL: orthogonal, gain sqrt(2), zero bias
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, 2**0.5)
                if m.bias is not None:  # all have one
                    nn.init.zeros_(m.bias)

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float()
        if self.scale is not None:
            x = x * self.scale
        h = torch.relu(self.linear(self.trunk(x).flatten(1)))
        return h.reshape(*lead, self.features)


def nature_trunk(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, 1), nn.ReLU())


def minatar_trunk(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, 16, 3, 1), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv0, self.conv1 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


def impala_trunk(c: int, channels: tuple[int, ...] = (16, 32, 32)) -> nn.Module:
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(3, 2, padding=1), _Residual(out), _Residual(out)]
        c = out
    return nn.Sequential(*layers, nn.ReLU())


_CNN = {"nature_cnn": (nature_trunk, 512), "minatar_cnn": (minatar_trunk, 128), "impala_cnn": (impala_trunk, 256)}


class DictEncoder(nn.Module):
    """A Dict observation's chosen keys, each through its own encoder, concatenated: ``[*lead, features]``.

    Takes the packed vector ``[*lead, layout.size]`` (acting: what the loop hands the policy) or the dict of
    per-key tensors ``[*lead, *shape]`` a Dict storage keeps (an update); both give the same features.
    ``encoders``: key -> its module (a CNN for image keys); the other keys are flattened to float32 (and
    scaled by 1/255 if pixels). Keys are encoded in ``keys`` order."""

    def __init__(self, layout: DictLayout, keys: list[str], encoders: dict[str, nn.Module], features: dict[str, int]):
        super().__init__()
        self.layout, self.keys = layout, list(keys)
        self.encoders = nn.ModuleDict({_module_name(k): m for k, m in encoders.items()})
        self.widths = dict(features)
        self.features = sum(features[k] for k in self.keys)
        self.scales = {k: pixel_scale(layout.by_name[k].space) for k in self.keys}

    def encode_key(self, name: str, x: Tensor) -> Tensor:
        """One key's features from its ``[*lead, *shape]`` values."""
        module = self.encoders[_module_name(name)] if _module_name(name) in self.encoders else None
        if module is not None:
            return module(x)
        rank = len(self.layout.by_name[name].shape)
        out = x.float().flatten(start_dim=x.dim() - rank)
        scale = self.scales[name]
        return out * scale if scale is not None else out

    def forward(self, obs: Obs) -> Tensor:
        parts = obs if isinstance(obs, dict) else self.layout.unpack(obs)
        return torch.cat([self.encode_key(k, parts[k]) for k in self.keys], dim=-1)


def _module_name(key: str) -> str:
    """A Dict key as an ``nn.ModuleDict`` name (which may not contain '.')."""
    return key.replace(".", "_")


def dict_keys_of(layout: DictLayout, dict_keys: list[str] | None, env_id: str = "the env") -> list[str]:
    """``network.dict_keys`` checked against the Dict's keys (null: all of them, in the space's order)."""
    if dict_keys is None:
        return layout.names
    if not dict_keys:
        raise UserError(f"network.dict_keys=[]: choose at least one of {env_id}'s observation keys: "
                        f"{', '.join(layout.names)} (null: all)")
    for k in dict_keys:
        if k not in layout.by_name:
            raise UserError(f"network.dict_keys: {k!r} is not a key of {env_id}'s Dict observation; its keys: "
                            f"{', '.join(layout.names)}")
    if len(set(dict_keys)) != len(dict_keys):
        raise UserError(f"network.dict_keys={list(dict_keys)}: a key is listed twice")
    return list(dict_keys)


class EncoderFactory:
    """Builds a fresh encoder per call (each head that needs its own trunk gets one); ``features`` is
    the width of what it outputs. Builds ``None`` for flat float vectors with ``mlp``: the heads then
    take the observation as it is (no extra module in the hot path, checkpoints unchanged). A packed Dict
    space (:class:`~rlx.networks.dict_obs.PackedDict`) builds a :class:`DictEncoder` over ``dict_keys``."""

    def __init__(self, name: str, space: gym.spaces.Box, dict_keys: list[str] | None = None):
        self.name, self.shape, self.scale = name, tuple(space.shape), pixel_scale(space)
        self.layout: DictLayout | None = space.layout if isinstance(space, PackedDict) else None
        self.features: int
        self._build: Callable[[], nn.Module | None]
        if self.layout is not None:
            layout = self.layout
            keys = dict_keys_of(layout, dict_keys)
            per_key: dict[str, EncoderFactory] = {
                k: EncoderFactory(name if layout.by_name[k].is_image else "mlp", layout.by_name[k].space) for k in keys}
            self.features = sum(f.features for f in per_key.values())
            widths = {k: f.features for k, f in per_key.items()}

            def build() -> nn.Module:  # each image key's CNN (built in key order: seeded runs reproduce)
                return DictEncoder(layout, keys, {k: cast(nn.Module, f()) for k, f in per_key.items() if f.is_cnn}, widths)

            self._build = build
        elif name == "mlp":
            self.features = int(np.prod(self.shape))
            self._build = (
                (lambda: None) if len(self.shape) == 1 and self.scale is None and space.dtype != np.bool_
                else (lambda: Flatten(self.shape, self.scale)))
        else:
            trunk, self.features = _CNN[name]
            self._build = lambda: CNNEncoder(trunk(self.shape[0]), self.shape, self.features, self.scale)

    @property
    def is_cnn(self) -> bool:
        return self.name != "mlp" and self.layout is None

    @property
    def is_dict(self) -> bool:
        return self.layout is not None

    def __call__(self) -> nn.Module | None:
        return self._build()


def check_observation_space(space: gym.Space, encoder: str, env_id: str) -> None:
    """One-line UserError when ``encoder`` cannot take ``space`` (Tuple, a Box of the wrong rank or size; a
    packed Dict: each image key as a Box of its own, vector keys flat)."""
    if encoder not in ENCODERS:
        raise UserError(f"network.encoder={encoder!r}: unknown encoder; choose one of: {', '.join(ENCODERS)}")
    if isinstance(space, PackedDict):
        for key in space.layout.keys:
            if len(key.shape) not in (1, 3):
                raise UserError(f"env.id={env_id}: Dict observation key {key.name!r} has shape {key.shape}; rlx encodes "
                                f"flat vectors (n,) and (C, H, W) images; reshape it with an env.wrappers entry")
            if key.is_image:
                check_observation_space(key.space, encoder, f"{env_id} (key {key.name!r})")
        return
    if not isinstance(space, gym.spaces.Box):
        raise UserError(f"env.id={env_id}: observation space {type(space).__name__} ({space}) is not supported: "
                        f"rlx encodes Box observations (network.encoder: mlp for vectors, "
                        f"{' | '.join(CNN_ENCODERS)} for (C, H, W) images) and Dict observations of Boxes; "
                        f"flatten it with an env.wrappers entry such as gymnasium.wrappers.FlattenObservation")
    shape = tuple(space.shape)
    if encoder == "mlp":
        return
    if len(shape) != 3:
        fits = "mlp" if len(shape) < 3 else "none (flatten or reshape it with env.wrappers)"
        raise UserError(f"network.encoder={encoder}: takes (C, H, W) image observations, but env.id={env_id} has "
                        f"shape {shape}; encoders that fit: {fits}")
    c, h, w = shape
    if w <= 4 < c:  # (H, W, C) with a few channels: RGB frames, MinAtar's raw states
        raise UserError(f"network.encoder={encoder}: takes channel-first (C, H, W) images, but env.id={env_id} has shape "
                        f"{shape}, which looks channels-last (H, W, C); add {{_target_: rlx.envs.ChannelsFirst}} to "
                        f"env.wrappers (or Atari's preprocessing, as env=pong does)")
    if min(h, w) < MIN_SPATIAL[encoder]:
        fitting = [e for e in CNN_ENCODERS if min(h, w) >= MIN_SPATIAL[e]] + ["mlp"]
        raise UserError(f"network.encoder={encoder}: needs H, W >= {MIN_SPATIAL[encoder]}, but env.id={env_id} "
                        f"has (C, H, W) = {shape}; encoders that fit: {', '.join(fitting)}")
