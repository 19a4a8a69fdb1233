"""Natural policy gradient pieces for TRPO: pure functions (notes: "Trust Region Policy Optimization",
the constraint PPO's clipping approximates).

TRPO maximizes the importance-sampled surrogate  L(theta) = mean( pi_theta(a|s) / pi_old(a|s) * A )
subject to  mean KL(pi_old(.|s) || pi_theta(.|s)) <= delta  (``max_kl``). With L linearized (gradient g)
and the KL expanded to second order (its Hessian at theta_old is the Fisher matrix F), the step is
    s = F^-1 g                          (conjugate gradient on Fisher-vector products, F never formed)
    beta = sqrt(2 delta / (s^T F s))    (the largest step along s with 1/2 (beta s)^T F (beta s) = delta)
    theta = theta_old + 0.8^k beta s    (backtracking until the true KL <= delta and L improved).

A population (issue 22) solves K members' problems at once: vectors ``[K, P]`` (member k's parameters in
row k, as rlx.optim.stacked lays them out), each member's scalars ``[K]`` (its own CG coefficients, step
size, line search), every dot product along the last dim; a plain vector ``[P]`` is one problem.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def flat_grad(output: Tensor, params: Sequence[Tensor], create_graph: bool = False, retain_graph: bool | None = None,
              allow_unused: bool = True, members: int | None = None) -> Tensor:
    """d output / d params as one flat vector (a parameter that does not influence ``output``: zeros).
    ``members``: parameters ``[K, ...]`` of K independent members and ``output`` the sum of their
    objectives -> ``[K, P]``, row k member k's gradient (in rlx.optim.stacked's ``[K, P]`` order)."""
    grads = torch.autograd.grad(output, list(params), create_graph=create_graph, retain_graph=retain_graph, allow_unused=allow_unused)
    shape = (-1,) if members is None else (members, -1)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(shape) for g, p in zip(grads, params, strict=True)],
                     dim=-1)


def flat_params(params: Sequence[Tensor]) -> Tensor:
    """The parameters' current values as one detached flat vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


@torch.no_grad()
def set_flat_params(params: Sequence[Tensor], flat: Tensor) -> None:
    """Write a flat vector back into the parameters, in place (their storage is kept: views stay valid)."""
    total = sum(p.numel() for p in params)
    if total != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} elements, the parameters {total}")
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def fisher_vector_product(grad_kl: Tensor, params: Sequence[Tensor], v: Tensor, damping: float | Tensor = 0.0) -> Tensor:
    """(F + damping I) v  with  F v = d/dtheta ( (d KL/dtheta)^T v ),  the Hessian of the mean KL at theta_old.

    ``grad_kl`` is d KL(pi_old || pi_theta)/d theta built with ``create_graph=True`` (the double backward:
    the network must support second derivatives). Differentiating the scalar grad_kl . v costs one
    backward pass and never forms F. At theta = theta_old the KL's Hessian equals the Fisher
    information E[grad log pi grad log pi^T]; ``damping`` (TRPO's cg_damping) keeps CG well conditioned.
    The graph of ``grad_kl`` is retained, so this can be called once per CG iteration.
    Members (``grad_kl`` and ``v`` ``[K, P]``, ``damping`` ``[K, 1]`` or a number): member k's KL depends on
    its own parameters only, so the Hessian of the summed KLs is block-diagonal and one backward of
    sum_k grad_kl_k . v_k gives every F_k v_k.
    """
    members = grad_kl.shape[0] if grad_kl.dim() == 2 else None
    try:
        # allow_unused=False: a once-differentiable node (the fused MLP) disconnects grad_kl from the
        # parameters, which would otherwise read as F v = 0 without any error
        hv = flat_grad((grad_kl * v.detach()).sum(), params, retain_graph=True, allow_unused=False, members=members)
    except RuntimeError as e:
        raise RuntimeError("Fisher-vector product: d KL/d theta cannot be differentiated again w.r.t. the parameters; "
                           "build the policy's forward inside rlx.networks.fused.double_backward()") from e
    return hv + damping * v


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iter: int = 10, residual_tol: float = 1e-10) -> Tensor:
    """x ~= A^-1 b for a symmetric positive-definite A given only as ``matvec(v) = A v``.

    Hestenes-Stiefel CG from x_0 = 0:  r_0 = p_0 = b;  alpha_k = r_k^T r_k / p_k^T A p_k;
    x_{k+1} = x_k + alpha_k p_k;  r_{k+1} = r_k - alpha_k A p_k;  p_{k+1} = r_{k+1} + (r_{k+1}^T r_{k+1} / r_k^T r_k) p_k.
    Exact after n iterations for an n x n system (in exact arithmetic); stops early once r^T r < ``residual_tol``.
    Members (``b`` ``[K, P]``, ``matvec`` block-diagonal): K systems, each with its own coefficients; a member
    whose residual is small stops there (its x, r, p no longer change) while the others go on.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = (r * r).sum(-1)
    for _ in range(max_iter):
        live = rr >= residual_tol
        if not bool(live.any()):
            break
        Ap = matvec(p)
        # a finished member's step is 0 (its alpha may be 0/0 there: where picks the 0)
        alpha = torch.where(live, rr / (p * Ap).sum(-1), torch.zeros_like(rr)).unsqueeze(-1)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = (r * r).sum(-1)
        p = torch.where(live.unsqueeze(-1), r + (rr_new / rr).unsqueeze(-1) * p, p)
        rr = torch.where(live, rr_new, rr)
    return x


def max_step_size(direction: Tensor, f_direction: Tensor, max_kl: float | Tensor) -> Tensor:
    """beta = sqrt(2 delta / (s^T F s)): the quadratic KL model 1/2 (beta s)^T F (beta s) equals delta
    (members: ``[K, P]`` directions and ``[K]`` deltas -> ``[K]`` step sizes)."""
    return torch.sqrt(2.0 * max_kl / (direction * f_direction).sum(-1))


def backtracking_line_search(evaluate: Callable[[Tensor], tuple[Tensor, Tensor]], full_step: Tensor, max_kl: float | Tensor,
                             shrink: float | Tensor = 0.8, max_iter: int = 10,
                             searching: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """First step in  full_step * shrink^k, k = 0..max_iter-1,  whose true mean KL <= ``max_kl`` and whose
    surrogate improves (gain > 0), for each member on its own.

    ``full_step`` ``[K, P]`` (or one ``[P]``); ``evaluate(steps)`` returns each member's (gain, kl) ``[K]``:
    the surrogate's improvement over theta_old and the mean KL at theta_old + steps[k]. Each member shrinks
    its own step until it is accepted; a member that has accepted keeps its step (later evaluations, made
    for the others, do not count for it). ``searching`` ``[K]`` bool: members that search at all (default
    all). Returns (accepted ``[K]`` bool, the steps ``[K, P]``: zero where rejected, so the caller keeps
    theta_old, the step sizes tried, and gain and kl of each member's last step tried, NaN if none).
    """
    batch = full_step.shape[:-1]
    coef = full_step.new_ones(batch)
    accepted = torch.zeros(batch, dtype=torch.bool, device=full_step.device)
    searching = torch.ones_like(accepted) if searching is None else searching
    tried = torch.zeros(batch, dtype=torch.long, device=full_step.device)
    gain = kl = full_step.new_full(batch, float("nan"))
    for _ in range(max_iter):
        trying = searching & ~accepted
        if not bool(trying.any()):
            break
        new_gain, new_kl = evaluate(coef.unsqueeze(-1) * full_step)
        gain, kl = torch.where(trying, new_gain, gain), torch.where(trying, new_kl, kl)
        tried += trying.long()
        ok = trying & (new_kl <= max_kl) & (new_gain > 0)
        accepted |= ok
        coef = torch.where(trying & ~ok, coef * shrink, coef)
    step = torch.where(accepted.unsqueeze(-1), coef.unsqueeze(-1) * full_step, torch.zeros_like(full_step))
    return accepted, step, tried, gain, kl
