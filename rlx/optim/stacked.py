"""Optimizer steps for a population of K members whose parameters live in one ``[K, P]`` tensor.

Why: torch's optimizers take one scalar learning rate per parameter group and ``clip_grad_norm_`` one
norm over everything it is given, so K members trained in one process would need K optimizers and K
clipping calls (K x the per-op overhead that already dominates small RL networks, rlx/networks/flat.py).
Here member k is row k of a ``[K, P]`` buffer (its parameters flattened in a fixed order), every
hyperparameter is a ``[K]`` tensor, and one step is a dozen whole-tensor ops for all members:

- :func:`stack_parameters`: ``[K, ...]`` parameters (e.g. :class:`rlx.networks.stacked.StackedMLP`'s)
  -> one ``[K, P]`` parameter, each original parameter becoming a view of it (the stacked analogue of
  :func:`rlx.networks.flat.flatten_parameters`); :func:`gather_stacked_grads` after ``backward``;
- :func:`clip_grad_norm_stacked_`: ``torch.nn.utils.clip_grad_norm_`` per member (member k's norm over
  its row only, its own ``max_norm``);
- :class:`StackedAdam`, :class:`StackedRMSprop`: torch's Adam / RMSprop update rules (default
  single-tensor implementations, no weight decay, no amsgrad) with per-member lr, betas/alpha and eps.

Members never see each other: every reduction is over dim 1 only and every state tensor is per row. A
``mask`` lets a step skip members (a member stopped after a non-finite loss keeps its weights and state).

Two layouts, chosen by measurement, one per kind of network:

- the flat ``[K, P]`` buffer above, for the on-policy algorithms' small MLPs (PPO, A2C: 64x64), where per-op
  overhead dominates and per-member gradient clipping needs each member's norm over all its parameters;
- :class:`MemberAdam`, for the off-policy algorithms' compute-bound 256x256 networks (SAC, TD3, DDPG):
  torch's own fused Adam kernel on each member's rows ``p[k]`` of ``[K, ...]`` parameters (no gradient
  ``cat``, no copy): measured on a SAC critic (135k parameters, CPU, one thread) 945 us per flat-buffer step
  vs 198 us for torch's fused Adam, ~15% of a plain SAC update. K=1 is exactly torch's fused Adam.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Protocol, Sequence, cast

import torch
from torch import Tensor, nn


class _StackedAttrs(Protocol):
    """What :func:`stack_parameters` attaches to the ``[K, P]`` parameter, for :func:`gather_stacked_grads`."""

    stacked_members: Sequence[nn.Parameter]
    stacked_member_ptrs: list[int]


def stack_parameters(params: Sequence[nn.Parameter], members: int | None = None) -> nn.Parameter:
    """Move ``[K, ...]`` parameters into one ``[K, P]`` parameter, row k = member k's values in order.

    Each parameter keeps its shape and stays a module parameter (forward, ``state_dict`` unchanged); its
    data becomes a strided view of the buffer. Stack after moving the module to its device (``.to()``
    re-allocates and breaks the views; :func:`gather_stacked_grads` checks). ``members=1``: parameters of
    any shape (a population of one, e.g. with an unstacked CNN encoder) form one ``[1, P]`` row.
    """
    params = [p for p in params if p.requires_grad]
    k = params[0].shape[0] if members is None else members
    if k != 1 and any(p.dim() == 0 or p.shape[0] != k for p in params):
        raise ValueError(f"all stacked parameters need the member dimension first, K={k}: {[tuple(p.shape) for p in params]}")
    with torch.no_grad():
        flat = nn.Parameter(torch.cat([p.detach().reshape(k, -1) for p in params], dim=1))
    offset = 0
    for p in params:
        n = p.numel() // k
        p.data = flat.data[:, offset : offset + n].view(p.shape)
        offset += n
    attrs = cast(_StackedAttrs, flat)
    attrs.stacked_members = params
    attrs.stacked_member_ptrs = [p.data_ptr() for p in params]
    return flat


def gather_stacked_grads(flat: nn.Parameter) -> None:
    """The members' gradients -> ``flat.grad`` ``[K, P]`` (one ``cat``; a parameter without a gradient
    contributes zeros), accumulated if ``flat.grad`` exists; the members' gradients are cleared."""
    attrs = cast(_StackedAttrs, flat)
    members = attrs.stacked_members
    grads = [p.grad for p in members]
    if all(g is None for g in grads):
        return
    if [p.data_ptr() for p in members] != attrs.stacked_member_ptrs:
        raise RuntimeError("a stacked parameter was re-allocated (moved with .to()?); stack after moving the module")
    k = flat.shape[0]
    grad = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(k, -1) for p, g in zip(members, grads, strict=True)],
                     dim=1)
    flat.grad = grad if flat.grad is None else flat.grad.add_(grad)
    for p in members:
        p.grad = None


def clip_grad_norm_stacked_(grad: Tensor, max_norm: Tensor | float) -> Tensor:
    """``clip_grad_norm_`` for each member: row k scaled by ``min(1, max_norm[k] / (||row k|| + 1e-6))``
    (torch's formula, including its 1e-6); returns the ``[K]`` norms before clipping."""
    norms = torch.linalg.vector_norm(grad, dim=1)
    coef = (max_norm / (norms + 1e-6)).clamp_(max=1.0)
    grad.mul_(coef.unsqueeze(1).to(grad.dtype))
    return norms


class StackedOptimizer:
    """Shared plumbing: per-member hyperparameters as ``[K]`` tensors, state tensors, state_dict."""

    hyper_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()

    def __init__(self, param: nn.Parameter, **hyper: Tensor | float | Sequence[float]):
        if param.dim() != 2:
            raise ValueError(f"expected a [K, P] parameter, got shape {tuple(param.shape)}")
        self.param = param
        self.members = param.shape[0]
        # float64 [K, 1]: the per-member scalars (bias corrections, step sizes) are formed in double as torch
        # forms its Python-float ones, then cast to the parameter's dtype once per step
        self.hyper: dict[str, Tensor] = {}
        for name in self.hyper_names:
            self.set(name, hyper[name])
        self.step_count = torch.zeros(self.members, 1, dtype=torch.float64, device=param.device)
        self.state: dict[str, Tensor] = {name: torch.zeros_like(param, memory_format=torch.contiguous_format)
                                         for name in self.state_names}

    def set(self, name: str, value: Tensor | float | Sequence[float]) -> None:
        """Set a hyperparameter for all members (a number) or per member (``K`` values): e.g. an annealed lr."""
        if name not in self.hyper_names:
            raise KeyError(f"{type(self).__name__} has no hyperparameter {name!r} ({', '.join(self.hyper_names)})")
        t = torch.as_tensor(value, dtype=torch.float64, device=self.param.device).reshape(-1, 1)
        if t.shape[0] == 1:
            t = t.expand(self.members, 1)
        if t.shape[0] != self.members:
            raise ValueError(f"{name}: {t.shape[0]} values for {self.members} members")
        self.hyper[name] = t.clone()

    def get(self, name: str) -> Tensor:
        return self.hyper[name].reshape(-1)

    def zero_grad(self) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self, mask: Tensor | None = None) -> None:
        """One update of every member with a gradient (``param.grad`` ``[K, P]``); ``mask`` ``[K]`` bool:
        only those members are updated (the others keep parameters, state and step count)."""
        grad = self.param.grad
        if grad is None:
            return
        if mask is None:
            self.step_count += 1
            self._update(self.param, grad, self.state, self.step_count)
            return
        keep = mask.reshape(-1, 1).to(self.param.device)
        count = self.step_count + keep.to(torch.float64)
        new_param, new_state = self.param.detach().clone(), {k: v.clone() for k, v in self.state.items()}
        self._update(new_param, grad, new_state, count.clamp(min=1))
        self.param.copy_(torch.where(keep, new_param, self.param))
        for k, v in self.state.items():
            v.copy_(torch.where(keep, new_state[k], v))
        self.step_count.copy_(count)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], step: Tensor) -> None:
        raise NotImplementedError

    def _scalar(self, x: Tensor) -> Tensor:
        return x.to(self.param.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"hyper": {k: v.reshape(-1).clone() for k, v in self.hyper.items()},
                "step": self.step_count.reshape(-1).clone(),
                "state": {k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state["hyper"].items():
            self.set(name, value)
        step = state["step"].to(self.step_count).reshape(-1, 1)
        if step.shape != self.step_count.shape:
            raise ValueError(f"state for {step.shape[0]} members, optimizer has {self.members}")
        self.step_count.copy_(step)
        for name in self.state_names:
            src = state["state"][name]
            if src.shape != self.state[name].shape:
                raise ValueError(f"{name}: shape {tuple(src.shape)} != {tuple(self.state[name].shape)}")
            self.state[name].copy_(src)


class StackedAdam(StackedOptimizer):
    """torch.optim.Adam's update per member: ``lr``, ``beta1``, ``beta2``, ``eps`` each a number or ``[K]``."""

    hyper_names = ("lr", "beta1", "beta2", "eps")
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, param: nn.Parameter, lr: Tensor | float | Sequence[float] = 1e-3,
                 betas: tuple[Any, Any] = (0.9, 0.999), eps: Tensor | float | Sequence[float] = 1e-8):
        super().__init__(param, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps)

    def _update(self, param, grad, state, step):
        h = self.hyper
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = self._scalar(h["beta1"]), self._scalar(h["beta2"])
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad * (1 - beta2), grad)  # torch's addcmul order: (value * g) * g
        step_size = self._scalar(h["lr"] / (1 - h["beta1"] ** step))
        bias_correction2_sqrt = self._scalar((1 - h["beta2"] ** step).sqrt())
        # the same ops as before, in place on the one fresh temporary each (fewer [K, P] allocations)
        denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(self._scalar(h["eps"]))
        param.sub_(torch.mul(step_size, exp_avg).div_(denom))


class StackedRMSprop(StackedOptimizer):
    """torch.optim.RMSprop's update per member: ``lr``, ``alpha``, ``eps`` (and ``momentum``) a number or
    ``[K]``; ``centered`` is shared (it changes which state exists)."""

    hyper_names = ("lr", "alpha", "eps", "momentum")

    def __init__(self, param: nn.Parameter, lr: Tensor | float | Sequence[float] = 1e-2,
                 alpha: Tensor | float | Sequence[float] = 0.99, eps: Tensor | float | Sequence[float] = 1e-8,
                 momentum: Tensor | float | Sequence[float] = 0.0, centered: bool = False):
        self.centered = centered
        self.use_momentum = bool(torch.as_tensor(momentum).gt(0).any())
        self.state_names = ("square_avg", *(("grad_avg",) if centered else ()),
                            *(("momentum_buffer",) if self.use_momentum else ()))
        super().__init__(param, lr=lr, alpha=alpha, eps=eps, momentum=momentum)

    def set(self, name, value):
        if name == "momentum" and hasattr(self, "state") and not self.use_momentum and bool(torch.as_tensor(value).gt(0).any()):
            raise ValueError("momentum > 0 needs an optimizer created with momentum > 0 (it has no momentum buffer)")
        super().set(name, value)

    def _update(self, param, grad, state, step):
        h = self.hyper
        alpha = self._scalar(h["alpha"])
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).add_((1 - alpha) * grad * grad)
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = (square_avg - grad_avg * grad_avg).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg.add_(self._scalar(h["eps"]))
        lr = self._scalar(h["lr"])
        if self.use_momentum:
            buf = state["momentum_buffer"]
            buf.mul_(self._scalar(h["momentum"])).add_(grad / avg)
            param.sub_(lr * buf)
        else:
            param.sub_(lr * grad / avg)


class StackedSGD(StackedOptimizer):
    """torch.optim.SGD's plain step (no momentum) per member: ``param -= lr * grad``."""

    hyper_names = ("lr",)

    def __init__(self, param: nn.Parameter, lr: Tensor | float | Sequence[float] = 1e-3):
        super().__init__(param, lr=lr)

    def _update(self, param, grad, state, step):
        param.sub_(self._scalar(self.hyper["lr"]) * grad)


def make_stacked_optimizer(name: str, param: nn.Parameter, lr: Sequence[float], eps: Sequence[float],
                           alpha: Sequence[float]) -> StackedOptimizer:
    """adam | rmsprop | sgd over a ``[K, P]`` buffer, per-member lr / eps / RMSprop alpha (the stacked
    counterpart of :func:`rlx.algos.common.make_optimizer`)."""
    if name == "adam":
        return StackedAdam(param, lr=lr, eps=eps)
    if name == "rmsprop":
        return StackedRMSprop(param, lr=lr, alpha=alpha, eps=eps)
    if name == "sgd":
        return StackedSGD(param, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


# --- per-tensor rows: the off-policy algorithms' optimizer -------------------------------------------


def member_rows(tensors: Sequence[Tensor], k: int, members: int) -> list[Tensor]:
    """Member k's part of each tensor: row k of ``[K, ...]`` tensors, the tensor itself when K=1."""
    return list(tensors) if members == 1 else [t[k] for t in tensors]


def _has_fused(device: torch.device) -> bool:
    return hasattr(torch, "_fused_adam_") and device.type in ("cpu", "cuda")


class MemberAdam:
    """Adam (torch's update rule, no weight decay or amsgrad) with per-member ``lr`` (K values)."""

    def __init__(self, params: Iterable[Tensor], lr: Sequence[float], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.members = len(lr)
        k = self.members
        if k != 1 and any(p.dim() == 0 or p.shape[0] != k for p in self.params):
            raise ValueError(f"parameters of a population of {k} need the member dimension first: "
                             f"{[tuple(p.shape) for p in self.params]}")
        self.lr = [float(x) for x in lr]
        self.betas, self.eps = betas, eps
        device = self.params[0].device
        self.fused = _has_fused(device)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.step_count = torch.zeros(k, dtype=torch.float32, device=device)  # torch's state["step"], per member

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def minimize(self, loss: Tensor, mask: Tensor | list[int] | None = None) -> None:
        """One step on ``loss`` (``[K]``, member k's loss depends on member k's rows only: its sum's
        gradient in row k is d loss_k)."""
        self.zero_grad()
        loss.sum().backward()
        self.step(mask)
        self.zero_grad()  # no gradients left between updates: every (compiled) step starts from the same state

    @torch.no_grad()
    def step(self, mask: Tensor | list[int] | None = None) -> None:
        """Update every member (``mask`` ``[K]`` bool, or their indices: only those) whose parameters have gradients."""
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not with_grad:
            return
        k = self.members
        live = range(k) if mask is None else mask if isinstance(mask, list) else \
            torch.nonzero(mask.reshape(-1)).flatten().tolist()
        groups: dict[float, list[int]] = defaultdict(list)
        for m in live:
            groups[self.lr[m]].append(m)
        beta1, beta2 = self.betas
        for lr, ms in groups.items():
            self.step_count[ms] += 1
            params, grads, avgs, sqs, steps = [], [], [], [], []
            for m in ms:
                sel = [self.params[i] for i in with_grad]
                params += member_rows([p.detach() for p in sel], m, k)
                grads += member_rows([p.grad for p in sel], m, k)  # type: ignore[misc]
                avgs += member_rows([self.exp_avg[i] for i in with_grad], m, k)
                sqs += member_rows([self.exp_avg_sq[i] for i in with_grad], m, k)
                steps += [self.step_count[m]] * len(sel)
            if torch.compiler.is_compiling():  # traced (compile=true): torch's capturable formula, the step a tensor
                for p, g, a, s, t in zip(params, grads, avgs, sqs, steps, strict=True):
                    a.lerp_(g, 1 - beta1)
                    s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denom = (s.sqrt() / (1 - beta2 ** t).sqrt()).add_(self.eps)
                    p.sub_(a / denom * (lr / (1 - beta1 ** t)))
            elif self.fused:
                torch._fused_adam_(params, grads, avgs, sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2,
                                   weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            else:  # torch's single-tensor formula
                for p, g, a, s, t in zip(params, grads, avgs, sqs, steps, strict=True):
                    a.lerp_(g, 1 - beta1)
                    s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    step = float(t)
                    denom = (s.sqrt() / (1 - beta2 ** step) ** 0.5).add_(self.eps)
                    p.addcdiv_(a, denom, value=-lr / (1 - beta1 ** step))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count.clone(), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        step = state["step"].to(self.step_count).reshape(-1)
        if step.shape != self.step_count.shape:
            raise ValueError(f"optimizer state for {step.shape[0]} members, this optimizer has {self.members}")
        self.step_count.copy_(step)
        for mine, saved in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            if len(mine) != len(saved) or any(a.shape != b.shape for a, b in zip(mine, saved, strict=True)):
                raise ValueError("optimizer state of other parameter shapes")
            for a, b in zip(mine, saved, strict=True):
                a.copy_(b)
