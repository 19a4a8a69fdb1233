"""Natural-gradient pieces against hand computations: CG on a small SPD system, the Fisher-vector
product against the explicit Fisher matrix of tiny policies, the step size and the line search."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from rlx.networks.fused import double_backward, fused_enabled
from rlx.networks.mlp import mlp
from rlx.objectives.natural_gradient import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    max_step_size,
    set_flat_params,
)


def test_conjugate_gradient_solves_a_2x2_spd_system_by_hand():
    # A = [[4, 1], [1, 3]], b = [1, 2]:  x = A^-1 b = 1/11 [[3, -1], [-1, 4]] [1, 2] = [1/11, 7/11]
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, max_iter=2)
    assert torch.allclose(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64), atol=1e-12)


def test_conjugate_gradient_first_iterate_is_the_steepest_descent_step():
    # one iteration: x_1 = (b^T b / b^T A b) b = 5 / 20 * [1, 2]  (b^T A b = 4 + 4 + 12 = 20)
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, max_iter=1)
    assert torch.allclose(x, torch.tensor([0.25, 0.5], dtype=torch.float64))


def test_conjugate_gradient_n_iterations_solve_an_n_dim_spd_system():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, max_iter=6, residual_tol=0.0)
    assert torch.allclose(A @ x, b, atol=1e-8)
    # fewer iterations: a worse solution (the test can fail if CG does nothing useful)
    assert (A @ conjugate_gradient(lambda v: A @ v, b, max_iter=2) - b).norm() > 1e-6


def test_conjugate_gradient_stops_on_a_zero_right_hand_side():
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or v, torch.zeros(3))
    assert torch.equal(x, torch.zeros(3)) and not calls


def _categorical_fisher(W: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Explicit Fisher of pi(.|s) = softmax(W s), theta = vec(W): mean_s sum_a pi(a|s) grad log pi grad log pi^T,
    with grad_W log pi(a|s) = (onehot(a) - pi) s^T (hand-derived, no autograd)."""
    n_act, n_obs = W.shape
    F = torch.zeros(n_act * n_obs, n_act * n_obs, dtype=W.dtype)
    for s in obs:
        p = torch.softmax(W @ s, -1)
        for a in range(n_act):
            g = torch.outer(torch.nn.functional.one_hot(torch.tensor(a), n_act).to(W.dtype) - p, s).reshape(-1)
            F += p[a] * torch.outer(g, g)
    return F / obs.shape[0]


def test_fisher_vector_product_equals_explicit_fisher_times_v_for_a_linear_softmax_policy():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    obs = torch.randn(5, 2, generator=g, dtype=torch.float64)
    v = torch.randn(6, generator=g, dtype=torch.float64)
    old = Categorical(logits=(obs @ W.T).detach())
    kl = kl_divergence(old, Categorical(logits=obs @ W.T)).mean()
    grad_kl = flat_grad(kl, [W], create_graph=True)
    F = _categorical_fisher(W.detach(), obs)
    assert torch.allclose(fisher_vector_product(grad_kl, [W], v), F @ v, atol=1e-10)
    # damping adds damping * v; the graph is retained, so it can be called again (as CG does)
    assert torch.allclose(fisher_vector_product(grad_kl, [W], v, damping=0.1), F @ v + 0.1 * v, atol=1e-10)


def test_fisher_vector_product_of_a_gaussian_policy_mean_and_log_std():
    # pi = N(mu, sigma^2) with mu = w * s, log sigma = c: Fisher per state diag(s^2 / sigma^2, 2) in (w, c)
    w = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([-0.3], dtype=torch.float64, requires_grad=True)
    obs = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def dist():
        return Independent(Normal((w * obs).unsqueeze(-1), c.exp().expand(3).unsqueeze(-1)), 1)

    old = Independent(Normal((w * obs).detach().unsqueeze(-1), c.exp().detach().expand(3).unsqueeze(-1)), 1)
    grad_kl = flat_grad(kl_divergence(old, dist()).mean(), [w, c], create_graph=True)
    sigma2 = math.exp(-0.6)
    F = torch.tensor([[(obs**2).mean().item() / sigma2, 0.0], [0.0, 2.0]], dtype=torch.float64)
    v = torch.tensor([1.5, -0.5], dtype=torch.float64)
    assert torch.allclose(fisher_vector_product(grad_kl, [w, c], v), F @ v, atol=1e-10)


def test_fisher_vector_product_through_an_mlp_needs_the_double_backward_switch():
    torch.manual_seed(0)
    net = mlp(3, 2, [8], "tanh").double()
    params = list(net.parameters())
    obs = torch.randn(300, 3, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
    old = Categorical(logits=net(obs).detach())
    # the fused node's backward is once_differentiable: differentiating through it again fails
    grad_kl = flat_grad(kl_divergence(old, Categorical(logits=net(obs))).mean(), params, create_graph=True)
    with pytest.raises(RuntimeError):
        fisher_vector_product(grad_kl, params, v)
    with double_backward():
        assert not fused_enabled()
        grad_kl = flat_grad(kl_divergence(old, Categorical(logits=net(obs))).mean(), params, create_graph=True)
        fv = fisher_vector_product(grad_kl, params, v)
    assert fused_enabled()
    # explicit Fisher from per-sample score vectors: mean_s sum_a pi(a|s) g g^T
    F = torch.zeros(v.numel(), v.numel(), dtype=torch.float64)
    for s in obs[:300]:
        logp = torch.log_softmax(net(s.unsqueeze(0)), -1)[0]
        for a in range(2):
            g = flat_grad(logp[a], params, retain_graph=True)
            F += logp[a].exp().detach() * torch.outer(g, g)
    assert torch.allclose(fv, F / obs.shape[0] @ v, atol=1e-8)


def test_max_step_size_puts_the_quadratic_kl_model_on_the_boundary():
    s = torch.tensor([2.0, 0.0])
    Fs = torch.tensor([8.0, 0.0])  # F = diag(4, .): s^T F s = 16
    beta = max_step_size(s, Fs, max_kl=0.02)
    assert beta.item() == pytest.approx(math.sqrt(2 * 0.02 / 16))
    assert 0.5 * beta**2 * (s @ Fs) == pytest.approx(0.02)


def test_line_search_backtracks_until_kl_and_improvement_hold():
    # KL grows as |step|^2, gain is positive only for |step| < 1: step 4 -> 3.2 -> 2.56 -> ... -> 0.8^k * 4
    def evaluate(step):
        size = step.abs().sum(-1)
        return 1.0 - size, size**2
    accepted, step, tried, gain, kl = backtracking_line_search(evaluate, torch.tensor([4.0]), max_kl=2.0, shrink=0.8,
                                                               max_iter=10)
    # first k with 4 * 0.8^k < 1 (needs gain > 0; kl <= 2 then too): k = 7 (4 * 0.8^7 = 0.839)
    assert accepted and tried == 8 and step.item() == pytest.approx(4 * 0.8**7)
    assert gain.item() == pytest.approx(1 - 4 * 0.8**7) and kl.item() == pytest.approx((4 * 0.8**7) ** 2)


def test_line_search_of_members_accepts_each_members_own_step():
    # member 0 as above (accepted after 8 tries); member 1 at once; member 2 never (rejected: a zero step)
    full = torch.tensor([[4.0], [0.5], [3.0]])

    def evaluate(step):
        size = step.abs().sum(-1)
        return torch.tensor([1.0, 1.0, -1.0]) - size * torch.tensor([1.0, 0.0, 0.0]), size**2
    accepted, step, tried, gain, kl = backtracking_line_search(evaluate, full, max_kl=torch.tensor([2.0, 2.0, 2.0]),
                                                               shrink=0.8, max_iter=10)
    assert accepted.tolist() == [True, True, False] and tried.tolist() == [8, 1, 10]
    torch.testing.assert_close(step[:, 0], torch.tensor([4 * 0.8**7, 0.5, 0.0]))


def test_conjugate_gradient_of_members_solves_each_members_system():
    g = torch.Generator().manual_seed(2)
    M = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2) + 0.5 * torch.eye(4, dtype=torch.float64)
    b = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b[1] = 0.0  # member 1 converged from the start: it stays at 0 while the others iterate
    x = conjugate_gradient(lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), b, max_iter=4, residual_tol=1e-20)
    for k in range(3):
        torch.testing.assert_close(x[k], conjugate_gradient(lambda v, k=k: A[k] @ v, b[k], max_iter=4, residual_tol=1e-20))
    assert torch.equal(x[1], torch.zeros(4, dtype=torch.float64))


def test_line_search_rejects_when_no_step_helps():
    accepted, step, tried, _, _ = backtracking_line_search(lambda s: (torch.tensor(-1.0), torch.tensor(0.0)),
                                                           torch.tensor([1.0]), max_kl=0.01, max_iter=5)
    assert not accepted and torch.equal(step, torch.zeros(1)) and tried == 5


def test_flat_params_round_trip_keeps_parameter_storage():
    net = mlp(2, 2, [3])
    params = list(net.parameters())
    ptrs = [p.data_ptr() for p in params]
    theta = flat_params(params)
    set_flat_params(params, theta + 1.0)
    assert torch.allclose(flat_params(params), theta + 1.0)
    assert [p.data_ptr() for p in params] == ptrs
    with pytest.raises(ValueError):
        set_flat_params(params, theta[:-1])
