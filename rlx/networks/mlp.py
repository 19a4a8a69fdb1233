"""Multi-layer perceptrons and the observation normalizer that travels inside the model."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rlx.networks.fused import FUSED_ACTIVATIONS, fused_mlp

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def mlp(
    in_dim: int,
    out_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "tanh",
    out_gain: float | None = None,
    orthogonal_init: bool = True,
) -> MLP:
    """in_dim -> hidden... -> out_dim. Orthogonal init (gain sqrt(2) hidden, ``out_gain`` last) as in SB3/CleanRL."""
    net = MLP([in_dim, *hidden_sizes, out_dim], activation)
    if orthogonal_init:
        for i, layer in enumerate(net.linears):
            last = i == len(net.linears) - 1
            gain = (out_gain if out_gain is not None else 1.0) if last else 2**0.5
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
    return net


class MLP(nn.Sequential):
    """Linear -> activation -> ... -> Linear. An ``nn.Sequential`` (the usual ``0.weight, 0.bias, 2.weight``
    state-dict keys, indexing, printing) whose forward runs as one fused autograd node for tanh and ReLU
    (:mod:`rlx.networks.fused`: same math, a fraction of the per-op overhead of small MLPs)."""

    def __init__(self, sizes: Sequence[int], activation: str = "tanh"):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)
        self.activation = activation
        self.linears = [m for m in layers if isinstance(m, nn.Linear)]  # a plain list: not registered twice

    def forward(self, x: Tensor) -> Tensor:
        if self.activation not in FUSED_ACTIVATIONS:
            return super().forward(x)
        return fused_mlp(x, [p for layer in self.linears for p in (layer.weight, layer.bias)], self.activation)


class ObsNormalizer(nn.Module):
    """Running mean/std of observations (parallel-variance update, as SB3's RunningMeanStd).

    The statistics are buffers, so they are saved and loaded with the model's ``state_dict`` and a
    checkpoint evaluated later normalizes exactly as during training. Identity when disabled.
    """

    mean: Tensor  # buffers (register_buffer), declared for the type checker
    var: Tensor
    count: Tensor

    def __init__(self, shape: Sequence[int], enabled: bool = True, clip: float = 10.0, eps: float = 1e-8,
                 members: int | None = None, keep: Tensor | None = None):
        """``members``: K independent statistics for a population's ``[K, B, *shape]`` observations (buffers
        ``[K, 1, *shape]``, row k updated from member k's observations only). ``keep``: a bool ``shape`` mask
        of entries passed through unchanged (a packed Dict observation's image keys: only its vector keys are
        normalized); not in the ``state_dict`` (it is the env's layout, not a statistic)."""
        super().__init__()
        self.keep: Tensor | None
        self.register_buffer("keep", None if keep is None else keep.bool(), persistent=False)
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.members = members
        lead = () if members is None else (members, 1)
        self.register_buffer("mean", torch.zeros(*lead, *shape))
        self.register_buffer("var", torch.ones(*lead, *shape))
        self.register_buffer("count", torch.full((*lead, *[1 for _ in shape]) if members else (), eps))

    @torch.no_grad()
    def update(self, batch: Tensor) -> None:
        if not self.enabled:
            return
        if self.members is not None:  # [K, ..., *shape] -> per-member statistics over everything but dim 0
            batch = batch.reshape(self.members, -1, *self.mean.shape[2:]).to(self.mean.dtype)
            b_mean, b_var, b_count = batch.mean(1, keepdim=True), batch.var(1, unbiased=False, keepdim=True), batch.shape[1]
        else:
            batch = batch.reshape(-1, *self.mean.shape).to(self.mean.dtype)
            b_mean, b_var, b_count = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean += delta * b_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: Tensor) -> Tensor:
        if not self.enabled:
            return obs
        out = torch.clamp((obs - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)
        return out if self.keep is None else torch.where(self.keep, obs, out)
