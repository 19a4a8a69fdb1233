"""K independent MLPs, each on its own inputs, as one module: ``[K, B, in]`` -> ``[K, B, out]`` (the member
dimension of a population's networks; two layouts, one per kind of network, as rlx/optim/stacked.py's two
optimizers).

A population (issue 12) runs K members' networks at once; member k sees only its own observations.
:class:`rlx.networks.ensemble.EnsembleMLP` already stacks the weights (``[K, in, out]`` per layer, biases
``[K, 1, out]``) but feeds every member the same ``[B, in]`` batch; :class:`StackedMLP` is that module with
per-member inputs, one ``baddbmm`` per layer for all members (on CPU too: with K inputs there is no shared
operand for EnsembleMLP's per-member ``addmm`` path to exploit). Parameters and ``state_dict`` layout are
EnsembleMLP's, so :func:`rlx.optim.stacked.stack_parameters` turns them into one ``[K, P]`` buffer.

With tanh or ReLU the whole stack is one autograd node with its backward written out (as
rlx/networks/fused.py's FusedMLP for one MLP; op by op inside ``double_backward()``), and on CPU a layer
with a narrow output (a policy's 2 logits, a critic's value) is computed transposed, where MKL is fast.
Measured (one thread, PPO CartPole heads 4-64-64-{2,1}, K=16, batch 256): a minibatch forward+backward
of both heads about 13.3 -> 8.2 ms (min over 50 steps; per-op autograd nodes, a tanh clone, a 300 us k=1 gemm and
narrow gemms before).

:meth:`StackedMLP.from_mlps` copies K ordinary MLPs (``nn.Sequential`` of ``nn.Linear`` and an activation,
rlx's :class:`~rlx.networks.mlp.MLP` included) into a stack, so members start exactly as K plain runs
would (same initialization); :meth:`StackedMLP.member_state_dict` gives member k back in that format.

:class:`MemberMLP` is the off-policy algorithms' layout: K members x E networks (twin critics), ``[K, B, in]``
-> ``[K, E, B, out]``; for their compute-bound 256x256 layers on CPU each network runs as rlx's fused MLP on
views of the weights (MKL's plain gemm beats its batched one there), one ``baddbmm`` per layer on CUDA.
"""
from __future__ import annotations

import copy
from typing import Sequence, cast

import torch
from torch import Tensor, nn

from rlx.networks.encoders import CNNEncoder
from rlx.networks.ensemble import EnsembleMLP
from rlx.networks.fused import FUSED_ACTIVATIONS, SIGMOID_TANH_MIN_NUMEL, activate_, fused_enabled, fused_kernels, fused_mlp
from rlx.networks.mlp import ACTIVATIONS

_MINUS_ONE = torch.tensor(-1.0)


class _StackedMLPFunction(torch.autograd.Function):
    """``_StackedMLPFunction.apply(activation, x, W_0, b_0, W_1, b_1, ...)``: a whole stack (``W_i``
    ``[K, in, out]``, ``b_i`` ``[K, 1, out]``) as ONE autograd node with the backward written out, as
    :class:`rlx.networks.fused.FusedMLP` is for one MLP: the activation is applied in place on the fresh
    pre-activation (nothing cloned), only each layer's input is saved, and no per-op graph nodes are
    recorded or visited. Gradients: dW = h^T g, db = sum_B g, dh = (g W^T) * act'(y)."""

    @staticmethod
    def forward(ctx, activation: str, x: Tensor, *params: Tensor) -> Tensor:
        out, inputs = _stacked_forward(x, params, activation)
        ctx.activation = activation
        ctx.n_layers = len(params) // 2
        ctx.save_for_backward(*inputs, *params[0::2])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        saved = ctx.saved_tensors
        n = ctx.n_layers
        inputs, weights = saved[:n], saved[n:]
        needs = ctx.needs_input_grad  # (activation, x, W_0, b_0, W_1, b_1, ...)
        grads: list[Tensor | None] = [None] * (2 * n)
        grad_x = None
        for i in reversed(range(n)):
            h, w = inputs[i], weights[i]
            if needs[2 + 2 * i]:
                # dW = h^T g, as whichever product MKL computes fast (see _narrow_output)
                grads[2 * i] = torch.bmm(grad.transpose(1, 2), h).transpose(1, 2) if _narrow_output(h, w) \
                    else torch.bmm(h.transpose(1, 2), grad)
            if needs[3 + 2 * i]:
                grads[2 * i + 1] = grad.sum(1, keepdim=True)
            if i > 0 or needs[1]:
                # dh = g W^T; with one output an outer product: a broadcast multiply (exact), where MKL's
                # k=1 gemm took 300 us for [16, 256, 1] x [16, 1, 64] on one thread (the multiply: ~40 us)
                dh = grad * w.transpose(1, 2) if w.shape[-1] == 1 else torch.bmm(grad, w.transpose(1, 2))
                if i > 0:  # in place on the fresh dh
                    if ctx.activation == "tanh":
                        grad = torch.ops.aten.tanh_backward.grad_input(dh, h, grad_input=dh)
                    else:
                        grad = torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
                else:
                    grad_x = dh
        return (None, grad_x, *grads)


def _narrow_output(h: Tensor, w: Tensor) -> bool:
    """Whether ``h @ w`` (``[K, B, in] @ [K, in, out]``) and ``h^T @ g`` are faster computed transposed on
    this CPU: MKL's batched gemm is several times slower for a result with a few columns and many rows than
    for its transpose (one thread, K=16, B=256, in=64: out=2 forward 367 vs 161 us, dW 393 vs 65 us; out=16
    about equal). Not for one member with one output (a gemv then: 5 vs 12 us) nor acting-sized batches, nor
    with ``fused_kernels=false``."""
    out, k, rows, inner = w.shape[-1], w.shape[0], h.shape[-2], h.shape[-1]
    return fused_kernels() and h.device.type == "cpu" and out <= 8 and inner >= 16 and rows >= 64 and (k > 1 or out > 1)


def _affine(b: Tensor, h: Tensor, w: Tensor) -> Tensor:
    """``b + h @ w`` per member (transposed where :func:`_narrow_output`; the result is then a transposed view)."""
    if _narrow_output(h, w):
        return torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), h.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b, h, w)


def _stacked_forward(x: Tensor, params: Sequence[Tensor], activation: str) -> tuple[Tensor, list[Tensor]]:
    """Output of the stack with ``params`` = [W_0, b_0, W_1, b_1, ...] on ``x`` ``[K, B, in]`` and the input
    of every layer (x, then each hidden activation, computed in place), which the backward needs."""
    inputs = [x]
    h = x
    last = len(params) // 2 - 1
    for i in range(last + 1):
        w, b = params[2 * i], params[2 * i + 1]
        if i < last and activation == "tanh" and h.device.type == "cpu" and \
                h.shape[0] * h.shape[1] * w.shape[-1] >= SIGMOID_TANH_MIN_NUMEL and not _narrow_output(h, w):
            # tanh(z) = 2 sigmoid(2z) - 1 in three passes over the fresh [K, B, out] product instead of six
            # (baddbmm's bias copy and accumulate, then *2, sigmoid, *2, -1): 2z = 2b + 2(h @ w) exactly
            h = torch.bmm(h, w)
            torch.add(b * 2, h, alpha=2, out=h).sigmoid_()
            h = torch.add(_MINUS_ONE, h, alpha=2, out=h)
        else:
            h = _affine(b, h, w)
            if i < last:
                h = activate_(h, activation)
        if i < last:
            inputs.append(h)
    return h, inputs


def _activation_name(modules: Sequence[nn.Module]) -> str | None:
    """The :data:`~rlx.networks.mlp.ACTIVATIONS` name of the one activation type of ``modules`` (None if empty)."""
    kinds = {type(m) for m in modules}
    if not kinds:
        return None
    names = [name for name, a in ACTIVATIONS.items() if {a} == kinds]
    if len(names) != 1:
        raise ValueError(f"networks of one activation expected, got {kinds}")
    return names[0]


def _mlp_layout(mlps: Sequence[nn.Sequential]) -> tuple[list[list[nn.Linear]], list[int], str]:
    """Each MLP's linear layers, and the layer sizes and activation name they must all share (ValueError if not)."""
    linears = [[m for m in net if isinstance(m, nn.Linear)] for net in mlps]
    sizes = [[layer.in_features for layer in ls] + [ls[-1].out_features] for ls in linears]
    if any(s != sizes[0] for s in sizes):
        raise ValueError(f"MLPs of one shape expected, got sizes {sizes}")
    # a single-layer (linear) MLP has no activation module: its own name, if it has one, else any
    activation = _activation_name([m for net in mlps for m in net if not isinstance(m, nn.Linear)])
    return linears, sizes[0], activation or str(getattr(mlps[0], "activation", "tanh"))


class StackedMLP(EnsembleMLP):
    def __init__(self, in_dim: int, out_dim: int, hidden_sizes: Sequence[int], activation: str, n: int):
        super().__init__(in_dim, out_dim, hidden_sizes, activation, n)
        self.activation_name = activation
        self.widest = max([*hidden_sizes, out_dim])

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``x`` ``[K, B, in]`` (member k's batch in row k), or ``[B, in]`` shared by all members."""
        if x.dim() == 2:
            x = x.expand(self.n, *x.shape)
        if x.shape[0] != self.n:
            raise ValueError(f"input has {x.shape[0]} members, the stack {self.n}")
        # the ParameterLists' own iteration is a getattr per item: ~10 us per forward, on every acting step
        ws = cast(list[Tensor], list(self.weights._parameters.values()))
        bs = cast(list[Tensor], list(self.biases._parameters.values()))
        last = len(ws) - 1
        # acting-sized batches without gradients: neither the transposed product (>= 64 rows) nor the sigmoid
        # tanh applies at this size, so the op-by-op loop is the same computation, minus ~30 us of Python per call
        acting = not torch.is_grad_enabled() and x.shape[1] < 64 and x.shape[0] * x.shape[1] * self.widest < SIGMOID_TANH_MIN_NUMEL
        if not acting and fused_enabled() and self.activation_name in FUSED_ACTIVATIONS:
            params = [p for wb in zip(ws, bs, strict=True) for p in wb]
            if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
                return _StackedMLPFunction.apply(self.activation_name, x, *params)
            return _stacked_forward(x, params, self.activation_name)[0]
        # op by op: acting (activations in place: no graph to keep), inside double_backward() (a graph that can
        # be differentiated twice), other activations
        in_place = acting and self.activation_name in FUSED_ACTIVATIONS
        h = x
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = activate_(h, self.activation_name) if in_place else self.activation(h)
        return h

    @classmethod
    def from_mlps(cls, mlps: Sequence[nn.Sequential]) -> StackedMLP:
        """A stack whose member k equals ``mlps[k]`` (same layer sizes and activation for all)."""
        linears, s, activation = _mlp_layout(mlps)
        ref = linears[0][0].weight
        stack = cls(s[0], s[-1], s[1:-1], activation, len(mlps)).to(device=ref.device, dtype=ref.dtype)
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


class MemberMLP(nn.Module):
    """K members x E MLPs (twin critics: E=2; an actor: E=1) as one module: ``[K, B, in]`` -> ``[K, E, B, out]``,
    member k's E networks on member k's inputs only. Weights ``[K, E, in, out]``, biases ``[K, E, 1, out]``.

    On CPU each network runs as rlx's fused MLP (:func:`rlx.networks.fused.fused_mlp`, what a plain run's
    MLP runs) on views of the weights: MKL's plain gemm beats its batched one for these shapes. On CUDA
    (or ``batched=True``) one ``baddbmm`` per layer for all K*E networks."""

    def __init__(self, sizes: Sequence[int], activation: str, k: int, e: int):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(k, e, a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(k, e, 1, b)) for b in sizes[1:])
        self.activation = ACTIVATIONS[activation]()
        self.activation_name = activation
        self.k, self.e = k, e
        self.batched: bool | None = None

    @classmethod
    def from_mlps(cls, mlps: Sequence[nn.Sequential]) -> MemberMLP:
        """Member k = ``mlps[k]`` (E=1): same layer sizes and activation for all."""
        linears, sizes, act = _mlp_layout(mlps)
        ref = linears[0][0].weight
        out = cls(sizes, act, len(mlps), 1).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for i in range(len(sizes) - 1):
                out.weights[i].copy_(torch.stack([ls[i].weight.t() for ls in linears]).unsqueeze(1))
                out.biases[i].copy_(torch.stack([ls[i].bias for ls in linears]).reshape(len(mlps), 1, 1, -1))
        return out

    @classmethod
    def from_ensembles(cls, ensembles: Sequence[EnsembleMLP]) -> MemberMLP:
        """Member k = ``ensembles[k]`` (its E networks)."""
        ref = ensembles[0]
        sizes = [ref.weights[0].shape[1]] + [w.shape[2] for w in ref.weights]
        act = _activation_name([e.activation for e in ensembles])
        if act is None:
            raise ValueError("ensembles without an activation")
        out = cls(sizes, act, len(ensembles), ref.n)
        out = out.to(device=ref.weights[0].device, dtype=ref.weights[0].dtype)
        with torch.no_grad():
            for i in range(len(sizes) - 1):
                out.weights[i].copy_(torch.stack([e.weights[i] for e in ensembles]))
                out.biases[i].copy_(torch.stack([e.biases[i] for e in ensembles]))
        return out

    def forward(self, x: Tensor, detach_params: bool = False, first: int | None = None) -> Tensor:
        """``x`` ``[K, B, in]`` -> ``[K, E, B, out]``; ``detach_params``: no gradient into the weights (still into ``x``);
        ``first``: only each member's first ``first`` networks (``[K, first, B, out]``; TD3's actor step uses Q_1 only)."""
        ws, bs = list(self.weights), list(self.biases)
        n_e = self.e if first is None else first
        if n_e != self.e:
            ws, bs = [w[:, :n_e] for w in ws], [b[:, :n_e] for b in bs]
        if detach_params:
            ws, bs = [w.detach() for w in ws], [b.detach() for b in bs]
        last = len(ws) - 1
        if not (self.batched or (self.batched is None and x.is_cuda)):
            # CPU: each of the K*E MLPs as rlx's fused MLP (one autograd node, rlx/networks/fused.py: what a
            # plain run's nn.Linear MLP runs) on views of the stacked weights; MKL's plain gemm beats its
            # batched one for these shapes (rlx/networks/ensemble.py)
            wl = [w.unbind(0) for w in ws]
            bl = [b.unbind(0) for b in bs]
            outs = []
            for k in range(self.k):
                wk = [w[k].unbind(0) for w in wl]
                bk = [b[k].unbind(0) for b in bl]
                for e in range(n_e):
                    if self.activation_name in FUSED_ACTIVATIONS:
                        params = [t for i in range(last + 1) for t in (wk[i][e].t(), bk[i][e].view(-1))]
                        outs.append(fused_mlp(x[k], params, self.activation_name))
                        continue
                    h = x[k]
                    for i in range(last + 1):
                        h = torch.addmm(bk[i][e], h, wk[i][e])
                        h = self.activation(h) if i < last else h
                    outs.append(h)
            return torch.stack(outs).view(self.k, n_e, *outs[0].shape)
        k, e = self.k, n_e
        h = x.unsqueeze(1).expand(k, e, *x.shape[1:]).reshape(k * e, *x.shape[1:])
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.baddbmm(b.flatten(0, 1), h, w.flatten(0, 1))
            h = self.activation(h) if i < last else h
        return h.view(k, e, *h.shape[1:])


class StackedConv2d(nn.Module):
    """K members' ``nn.Conv2d`` as one grouped convolution over the channels-stacked input
    ``[B, K*C, H, W]``: group k sees only member k's channels and weights. Weights keep the member
    dimension first (``[K, out, in, kh, kw]``, bias ``[K, out]``) like the other stacked modules."""

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        first = convs[0]
        self.stride, self.padding = first.stride, first.padding
        self.weight = nn.Parameter(torch.stack([c.weight.detach().clone() for c in convs]))
        self.bias = nn.Parameter(torch.stack([cast(Tensor, c.bias).detach().clone() for c in convs]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(), self.stride,
                                          self.padding, groups=self.weight.shape[0])  # K from the weights: a member_view's is 1


class StackedCNNEncoder(nn.Module):
    """K members' :class:`rlx.networks.encoders.CNNEncoder` as one module: ``[K, B, C, H, W]`` (any batch
    dims after K) -> ``[K, B, features]``, member k computed only from its own weights. The trunk is
    member 0's with every conv replaced by a :class:`StackedConv2d` (ReLU, max-pool and the residual
    adds are per channel, so they stay per member on the channels-stacked tensor); the final linear
    layer is a batched matmul over the member dimension. Every parameter has the member dimension first,
    so :func:`rlx.optim.stacked.stack_parameters` puts them in the ``[K, P]`` buffer and
    :func:`rlx.members.member_view` slices one member (K is read from the input, not stored)."""

    def __init__(self, encoders: Sequence[CNNEncoder]):
        super().__init__()
        first = encoders[0]
        self.scale = first.scale
        self.obs_shape: tuple[int, ...] = first.obs_shape
        self.features: int = first.features
        self.trunk = copy.deepcopy(first.trunk)
        member_modules = [dict(e.trunk.named_modules()) for e in encoders]
        for name, module in list(self.trunk.named_modules()):
            if isinstance(module, nn.Conv2d):
                parent_name, _, attr = name.rpartition(".")
                parent = self.trunk.get_submodule(parent_name) if parent_name else self.trunk
                setattr(parent, attr, StackedConv2d([cast(nn.Conv2d, m[name]) for m in member_modules]))
        self.weight = nn.Parameter(torch.stack([e.linear.weight.detach().t().clone() for e in encoders]))
        self.bias = nn.Parameter(torch.stack([e.linear.bias.detach().clone() for e in encoders]).unsqueeze(1))

    @classmethod
    def from_encoders(cls, encoders: Sequence[CNNEncoder]) -> StackedCNNEncoder:
        return cls(encoders)

    def forward(self, obs: Tensor) -> Tensor:
        k, lead = obs.shape[0], obs.shape[1:-3]
        c, h, w = obs.shape[-3:]
        x = obs.reshape(k, -1, c, h, w).float()
        b = x.shape[1]
        if self.scale is not None:
            x = x * self.scale
        x = x.transpose(0, 1).reshape(b, k * c, h, w)  # members stacked along channels for the grouped convs
        y = self.trunk(x)
        y = y.reshape(b, k, -1).transpose(0, 1)  # [K, B, C'*H'*W'], each member flattened as CNNEncoder does
        out = torch.relu(torch.baddbmm(self.bias, y, self.weight))
        return out.reshape(k, *lead, self.features)
