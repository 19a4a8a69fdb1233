"""Natural policy gradient pieces for TRPO: pure functions (notes: "Trust Region Policy Optimization",
the constraint PPO's clipping approximates).

TRPO maximizes the importance-sampled surrogate  L(theta) = mean( pi_theta(a|s) / pi_old(a|s) * A )
subject to  mean KL(pi_old(.|s) || pi_theta(.|s)) <= delta  (``max_kl``). With L linearized (gradient g)
and the KL expanded to second order (its Hessian at theta_old is the Fisher matrix F), the step is
    s = F^-1 g                          (conjugate gradient on Fisher-vector products, F never formed)
    beta = sqrt(2 delta / (s^T F s))    (the largest step along s with 1/2 (beta s)^T F (beta s) = delta)
    theta = theta_old + 0.8^k beta s    (backtracking until the true KL <= delta and L improved).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def flat_grad(output: Tensor, params: Sequence[Tensor], create_graph: bool = False, retain_graph: bool | None = None,
              allow_unused: bool = True) -> Tensor:
    """d output / d params as one flat vector (a parameter that does not influence ``output``: zeros)."""
    grads = torch.autograd.grad(output, list(params), create_graph=create_graph, retain_graph=retain_graph, allow_unused=allow_unused)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)])


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


def fisher_vector_product(grad_kl: Tensor, params: Sequence[Tensor], v: Tensor, damping: float = 0.0) -> Tensor:
    """(F + damping I) v  with  F v = d/dtheta ( (d KL/dtheta)^T v ),  the Hessian of the mean KL at theta_old.

    ``grad_kl`` is d KL(pi_old || pi_theta)/d theta built with ``create_graph=True`` (the double backward:
    the network must support second derivatives). Differentiating the scalar grad_kl . v costs one
    backward pass and never forms F. At theta = theta_old the KL's Hessian equals the Fisher
    information E[grad log pi grad log pi^T]; ``damping`` (TRPO's cg_damping) keeps CG well conditioned.
    The graph of ``grad_kl`` is retained, so this can be called once per CG iteration.
    """
    try:
        # allow_unused=False: a once-differentiable node (the fused MLP) disconnects grad_kl from the
        # parameters, which would otherwise read as F v = 0 without any error
        hv = flat_grad(grad_kl @ v.detach(), params, retain_graph=True, allow_unused=False)
    except RuntimeError as e:
        raise RuntimeError("Fisher-vector product: d KL/d theta cannot be differentiated again w.r.t. the parameters; "
                           "build the policy's forward inside rlx.networks.fused.double_backward()") from e
    return hv + damping * v


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, max_iter: int = 10, residual_tol: float = 1e-10) -> Tensor:
    """x ~= A^-1 b for a symmetric positive-definite A given only as ``matvec(v) = A v``.

    Hestenes-Stiefel CG from x_0 = 0:  r_0 = p_0 = b;  alpha_k = r_k^T r_k / p_k^T A p_k;
    x_{k+1} = x_k + alpha_k p_k;  r_{k+1} = r_k - alpha_k A p_k;  p_{k+1} = r_{k+1} + (r_{k+1}^T r_{k+1} / r_k^T r_k) p_k.
    Exact after n iterations for an n x n system (in exact arithmetic); stops early once r^T r < ``residual_tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(max_iter):
        if rr < residual_tol:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def max_step_size(direction: Tensor, f_direction: Tensor, max_kl: float) -> Tensor:
    """beta = sqrt(2 delta / (s^T F s)): the quadratic KL model 1/2 (beta s)^T F (beta s) equals delta."""
    return torch.sqrt(2.0 * max_kl / (direction @ f_direction))


def backtracking_line_search(evaluate: Callable[[Tensor], tuple[float, float]], full_step: Tensor, max_kl: float,
                             shrink: float = 0.8, max_iter: int = 10) -> tuple[Tensor | None, int, float, float]:
    """First step in  full_step * shrink^k, k = 0..max_iter-1,  whose true mean KL <= ``max_kl`` and whose
    surrogate improves (gain > 0).

    ``evaluate(step)`` returns (gain, kl): the surrogate's improvement over theta_old and the mean KL at
    theta_old + step. Returns (accepted step or None, steps tried, gain, kl of the last step tried); with
    None the caller keeps theta_old (the quadratic model was wrong everywhere it looked).
    """
    coef = 1.0
    gain = kl = float("nan")
    for k in range(max_iter):
        step = coef * full_step
        gain, kl = evaluate(step)
        if kl <= max_kl and gain > 0:
            return step, k + 1, gain, kl
        coef *= shrink
    return None, max_iter, gain, kl
