"""A whole MLP (Linear -> activation -> ... -> Linear) as one autograd node, backward written out.

Why: for the small MLPs of on-policy RL (64x64 hidden, a batch of 256, one CPU thread) the matmuls
are cheap and PyTorch's per-op autograd bookkeeping is not: one graph node per Linear, activation
and transpose, each recorded in the forward and visited in the backward. And ``torch.tanh`` is not
vectorized in the CPU builds we measured (35 us for a 256x64 tensor vs 4 us for ``torch.sigmoid``),
so tanh is computed as 2 sigmoid(2z) - 1 (the same function; |error| < 1e-6 in float32).
Measured (one CPU thread, 64x64 tanh MLPs, batch 256): forward+backward of one MLP 191 us vs 229 us
as ``nn.Sequential``; a whole PPO CartPole minibatch update (actor + critic + loss + Adam) 823 us vs
872 us.

The gradients are the textbook ones (tests/unit/test_fused_mlp.py checks them against autograd with
``gradcheck`` in float64): for y = act(h W^T + b),  dW = g^T h,  db = sum(g),  dh = (g W) * act'(y),
where act' is read off the saved output as torch's own backward does (1 - y^2 for tanh, y > 0 for
ReLU).

That backward is ``once_differentiable``. Code that differentiates a gradient again (TRPO's
Fisher-vector products) runs its forward inside :func:`double_backward`, where the MLP is recorded as
plain torch ops (the ``nn.Sequential`` path).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

FUSED_ACTIVATIONS = ("tanh", "relu")

# >0 inside ``double_backward()``: MLPs run as plain torch ops, whose graph can be differentiated twice.
_plain_depth = 0

# The run's ``fused_kernels`` setting (process-wide; :func:`set_fused_kernels`): False turns every hand-written
# kernel of this module and rlx/networks/stacked.py off, so the networks are plain torch ops (LeanRL's rule:
# CPU micro-tricks only where they pay, behind a switch that turns them off).
_fused_kernels = True


def set_fused_kernels(enabled: bool) -> None:
    """``fused_kernels=true|false`` for this process (set at a job's start, rlx/train/run.py): True, the default,
    runs the MLPs through the hand-written kernels (one autograd node per MLP with its backward written out,
    tanh as 2 sigmoid(2z) - 1 for large CPU tensors, transposed products for narrow outputs on CPU); False,
    through plain torch ops (``nn.Linear``/``baddbmm`` and ``torch.tanh``), the same functions to float rounding."""
    global _fused_kernels
    _fused_kernels = bool(enabled)


def fused_kernels() -> bool:
    """The process's ``fused_kernels`` setting (:func:`set_fused_kernels`)."""
    return _fused_kernels


@contextlib.contextmanager
def double_backward() -> Iterator[None]:
    """Inside this block every MLP forward is recorded op by op (Linear, tanh/ReLU: the ``nn.Sequential``
    path) instead of as one :class:`FusedMLP` node, whose hand-written backward is ``once_differentiable``.
    TRPO needs it: its Fisher-vector products differentiate the gradient of the KL a second time."""
    global _plain_depth
    _plain_depth += 1
    try:
        yield
    finally:
        _plain_depth -= 1


def fused_enabled() -> bool:
    """False with ``fused_kernels=false``, inside :func:`double_backward`, and while ``torch.compile`` traces
    (``compile=true``: plain ops, which inductor fuses; the hand-written nodes are for eager)."""
    return _fused_kernels and _plain_depth == 0 and not torch.compiler.is_compiling()


# Below this many elements torch's own (scalar) CPU tanh beats the four vectorized ops of the identity
# (8x64, an acting batch: 2 us vs 6 us; 256x64, a minibatch: 35 us vs 10 us). On GPUs tanh is one
# vectorized kernel, so it is always used there.
SIGMOID_TANH_MIN_NUMEL = 4096


def activate_(z: Tensor, activation: str) -> Tensor:
    """act(z) in place on a fresh pre-activation."""
    if activation == "tanh":
        if z.device.type != "cpu" or z.numel() < SIGMOID_TANH_MIN_NUMEL or not _fused_kernels:
            return z.tanh_()
        return z.mul_(2).sigmoid_().mul_(2).sub_(1)  # tanh(z) = 2 sigmoid(2z) - 1
    return z.relu_()


def _activation_backward(grad: Tensor, out: Tensor, activation: str) -> Tensor:
    """dL/dz from dL/dy and y = act(z), the kernels torch's own Tanh/ReLU backward use."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, out)  # grad * (1 - y^2)
    return torch.ops.aten.threshold_backward(grad, out, 0)  # grad * (y > 0)


def mlp_forward(x: Tensor, params: Sequence[Tensor], activation: str) -> tuple[Tensor, list[Tensor]]:
    """Output of the MLP with ``params`` = [W_0, b_0, W_1, b_1, ...] (nn.Linear layout, W: [out, in]) on a
    2-D ``x``, and the input of every Linear (x, then each hidden activation), which the backward needs."""
    inputs = [x]
    h = x
    last = len(params) // 2 - 1
    for i in range(last + 1):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
        if i < last:
            h = activate_(h, activation)
            inputs.append(h)
    return h, inputs


class FusedMLP(torch.autograd.Function):
    """``FusedMLP.apply(activation, x, W_0, b_0, ...)``: the MLP's output, one node in the graph."""

    @staticmethod
    def forward(ctx, activation: str, x: Tensor, *params: Tensor) -> Tensor:
        out, inputs = mlp_forward(x, params, activation)
        ctx.activation = activation
        ctx.n_layers = len(params) // 2
        ctx.save_for_backward(*inputs, *params[0::2])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        saved = ctx.saved_tensors
        n = ctx.n_layers
        inputs, weights = saved[:n], saved[n:]
        needs = ctx.needs_input_grad  # (activation, x, W_0, b_0, W_1, b_1, ...)
        grads: list[Tensor | None] = [None] * (2 * n)
        grad_x = None
        grad = grad.contiguous()
        for i in reversed(range(n)):
            if needs[2 + 2 * i]:
                # dW = g^T h, as whichever product has the wider result: MKL's small gemms are several
                # times slower with 1-4 output columns (64x256 @ 256x4: 14 us; 4x256 @ 256x64: 5 us)
                h = inputs[i]
                grads[2 * i] = grad.t().mm(h) if h.shape[1] >= grad.shape[1] else h.t().mm(grad).t()
            if needs[3 + 2 * i]:
                grads[2 * i + 1] = grad.sum(0)
            if i > 0:
                grad = _activation_backward(grad.mm(weights[i]), inputs[i], ctx.activation)
            elif needs[1]:
                grad_x = grad.mm(weights[0])
        return (None, grad_x, *grads)


def _plain_forward(x: Tensor, params: Sequence[Tensor], activation: str) -> Tensor:
    """The same MLP as out-of-place torch ops (what ``nn.Sequential`` records): twice differentiable."""
    h = x
    last = len(params) // 2 - 1
    for i in range(last + 1):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
        if i < last:
            h = torch.tanh(h) if activation == "tanh" else torch.relu(h)
    return h


def fused_mlp(x: Tensor, params: Sequence[Tensor], activation: str) -> Tensor:
    """The MLP on ``x`` of shape [..., in]: one autograd node when gradients are recorded (op by op
    inside :func:`double_backward`), the plain forward (nothing saved) otherwise."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        out = FusedMLP.apply(activation, x2, *params) if fused_enabled() else _plain_forward(x2, params, activation)
    else:
        out = mlp_forward(x2, params, activation)[0]
    return out.reshape(*lead, out.shape[-1])
