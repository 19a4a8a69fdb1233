"""torch's Adam per population member, on the members' rows of ``[K, ...]`` parameters (issue 12).

The off-policy algorithms' networks are compute-bound 256x256 MLPs whose plain run steps three Adams per
update; there a flat ``[K, P]`` buffer (:class:`rlx.optim.stacked.StackedAdam`) costs a gradient ``cat``
and a dozen whole-buffer ops per step: measured on a SAC critic (135k parameters, CPU, one thread) 945 µs
per gathered step vs 198 µs for torch's fused Adam, ~15% of a plain SAC update. :class:`MemberAdam`
instead calls torch's fused Adam kernel (one multi-tensor kernel, the kernel a plain run used before) on
each member's rows ``p[k]`` (contiguous views: no copy, no ``cat``), with that member's own learning
rate, moments and step count: members that share a learning rate go into one call. K=1 is torch's fused
Adam on the whole parameters, exactly a plain run's optimizer. A ``mask`` skips members (their weights,
moments and step count stay as they are).

Parameters without a member dimension are allowed only for K=1 (e.g. a CNN encoder of a plain run).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor


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

    def minimize(self, loss: Tensor, mask: Tensor | None = None) -> None:
        """One step on ``loss`` (``[K]``, member k's loss depends on member k's rows only: its sum's
        gradient in row k is d loss_k)."""
        self.zero_grad()
        loss.sum().backward()
        self.step(mask)

    @torch.no_grad()
    def step(self, mask: Tensor | None = None) -> None:
        """Update every member (``mask`` ``[K]`` bool: only those) whose parameters have gradients."""
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not with_grad:
            return
        k = self.members
        live = range(k) if mask is None else torch.nonzero(mask.reshape(-1)).flatten().tolist()
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
            if self.fused:
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
