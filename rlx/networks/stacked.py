"""K independent MLPs, each on its own inputs, as one module: ``[K, B, in]`` -> ``[K, B, out]``.

A population (issue 12) runs K members' networks at once; member k sees only its own observations.
:class:`rlx.networks.ensemble.EnsembleMLP` already stacks the weights (``[K, in, out]`` per layer, biases
``[K, 1, out]``) but feeds every member the same ``[B, in]`` batch; :class:`StackedMLP` is that module with
per-member inputs, one ``baddbmm`` per layer for all members (on CPU too: with K inputs there is no shared
operand for EnsembleMLP's per-member ``addmm`` path to exploit). Parameters and ``state_dict`` layout are
EnsembleMLP's, so :func:`rlx.optim.stacked.stack_parameters` turns them into one ``[K, P]`` buffer.

:meth:`StackedMLP.from_mlps` copies K ordinary MLPs (``nn.Sequential`` of ``nn.Linear`` and an activation,
rlx's :class:`~rlx.networks.mlp.MLP` included) into a stack, so members start exactly as K plain runs
would (same initialization); :meth:`StackedMLP.member_state_dict` gives member k back in that format.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rlx.networks.ensemble import EnsembleMLP
from rlx.networks.fused import SIGMOID_TANH_MIN_NUMEL, _activate_, _activation_backward, fused_enabled
from rlx.networks.mlp import ACTIVATIONS


class _Tanh(torch.autograd.Function):
    """tanh as one autograd node computed as 2 sigmoid(2z) - 1 (rlx/networks/fused.py: torch's CPU tanh is
    not vectorized, and a stacked layer's [K, B, hidden] activations are K times a plain run's)."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        out = _activate_(z.clone(), "tanh")
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return _activation_backward(grad, out, "tanh")


class StackedMLP(EnsembleMLP):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``x`` ``[K, B, in]`` (member k's batch in row k), or ``[B, in]`` shared by all members."""
        if x.dim() == 2:
            x = x.expand(self.n, *x.shape)
        if x.shape[0] != self.n:
            raise ValueError(f"input has {x.shape[0]} members, the stack {self.n}")
        last = len(self.weights) - 1
        # the sigmoid form where fused.py uses it (CPU, large tensors), unless second derivatives are asked for
        sigmoid_tanh = (isinstance(self.activation, nn.Tanh) and x.device.type == "cpu" and fused_enabled()
                        and x.shape[0] * x.shape[1] * max(w.shape[-1] for w in self.weights) >= SIGMOID_TANH_MIN_NUMEL)
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = _Tanh.apply(h) if sigmoid_tanh else self.activation(h)
        return h

    @classmethod
    def from_mlps(cls, mlps: Sequence[nn.Sequential]) -> StackedMLP:
        """A stack whose member k equals ``mlps[k]`` (same layer sizes and activation for all)."""
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in mlps]
        acts = {type(m) for net in mlps for m in net if not isinstance(m, nn.Linear)}
        # a single-layer (linear) MLP has no activation module: its own name, if it has one, else any
        names = [name for name, a in ACTIVATIONS.items() if {a} == acts] if acts else \
            [str(getattr(mlps[0], "activation", "tanh"))]
        sizes = [[layer.in_features for layer in ls] + [ls[-1].out_features] for ls in linears]
        if len(names) != 1 or any(s != sizes[0] for s in sizes):
            raise ValueError(f"from_mlps needs MLPs of one shape and one activation, got sizes {sizes}, activations {acts}")
        s = sizes[0]
        ref = linears[0][0].weight
        stack = cls(s[0], s[-1], s[1:-1], names[0], len(mlps)).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for i in range(len(s) - 1):
                stack.weights[i].copy_(torch.stack([ls[i].weight.t() for ls in linears]))
                stack.biases[i].copy_(torch.stack([ls[i].bias.unsqueeze(0) for ls in linears]))
        return stack

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k as an ``nn.Sequential`` MLP's state_dict (``0.weight``, ``0.bias``, ``2.weight``, ...)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{2 * i}.weight"] = w[k].t().detach().clone()
            out[f"{2 * i}.bias"] = b[k, 0].detach().clone()
        return out

