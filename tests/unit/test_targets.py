"""Critic targets, actor/temperature losses and target-network updates against hand-computed numbers."""
from __future__ import annotations

import math

import pytest
import torch

from rlx.objectives.targets import (
    bellman_target,
    clipped_double_q_target,
    critic_regression_loss,
    ddpg_policy_loss,
    discrete_sac_policy_loss,
    discrete_sac_temperature_loss,
    discrete_soft_value,
    hard_update_,
    leave_one_out_baseline,
    offpolicy_ac_policy_loss,
    polyak_update_,
    sac_policy_loss,
    sac_temperature_loss,
    soft_bellman_target,
    soft_value_target,
    td3_smoothed_target_action,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ----------------------------------------------------------------------------------------- targets


def test_bellman_target_hand_numbers() -> None:
    # r=1, γ=0.5, d=0, q'=2 -> 1 + 0.5*2 = 2;  r=3, d=1 -> 3 (no bootstrap);  r=-1, d=0, q'=4 -> 1
    y = bellman_target(t(1.0, 3.0, -1.0), t(2.0, 10.0, 4.0), torch.tensor([False, True, False]), 0.5)
    torch.testing.assert_close(y, t(2.0, 3.0, 1.0))


def test_bellman_target_float_terminated_and_tensor_gamma() -> None:
    # per-transition γ (e.g. n-step γ^n): 1 + 0.25*4 = 2, 0 + 0.9*(1-0)*1 = 0.9
    y = bellman_target(t(1.0, 0.0), t(4.0, 1.0), t(0.0, 0.0), t(0.25, 0.9))
    torch.testing.assert_close(y, t(2.0, 0.9))


def test_bellman_target_truncation_still_bootstraps() -> None:
    # A time-limit truncation is passed as terminated=False, so the value of s' is kept.
    terminated, truncated = torch.tensor([False]), torch.tensor([True])
    y = bellman_target(t(1.0), t(2.0), terminated, 0.5)
    assert truncated.item() and y.item() == pytest.approx(2.0)


def test_bellman_target_rejects_silent_broadcast() -> None:
    with pytest.raises(ValueError, match="shape"):
        bellman_target(t(1.0, 2.0), t(1.0, 2.0).unsqueeze(-1), t(0.0, 0.0), 0.99)


def test_clipped_double_q_target_takes_min() -> None:
    # min(3, 5)=3 -> 1 + 0.5*3 = 2.5;  min(4, -2)=-2 -> 0 + 0.5*(-2) = -1;  terminal -> r = 7
    y = clipped_double_q_target(t(1.0, 0.0, 7.0), t(3.0, 4.0, 1.0), t(5.0, -2.0, 2.0), t(0.0, 0.0, 1.0), 0.5)
    torch.testing.assert_close(y, t(2.5, -1.0, 7.0))


def test_soft_bellman_target_hand_numbers() -> None:
    # r=1, γ=0.5, α=0.2, q'=3, log π'=-1 -> V'=3+0.2=3.2 -> y = 1 + 0.5*3.2 = 2.6
    # r=2, terminal -> y = 2
    y = soft_bellman_target(t(1.0, 2.0), t(3.0, 100.0), t(-1.0, -1.0), t(0.0, 1.0), 0.5, 0.2)
    torch.testing.assert_close(y, t(2.6, 2.0))


def test_soft_bellman_target_alpha_tensor_is_detached() -> None:
    log_alpha = torch.tensor(math.log(0.2), dtype=torch.float64, requires_grad=True)
    y = soft_bellman_target(t(1.0), t(3.0), t(-1.0), t(0.0), 0.5, log_alpha.exp())
    torch.testing.assert_close(y, t(2.6))
    assert not y.requires_grad


def test_soft_value_target() -> None:
    # 2 - 0.5*(-2) = 3;  1 - 0.5*0.4 = 0.8
    torch.testing.assert_close(soft_value_target(t(2.0, 1.0), t(-2.0, 0.4), 0.5), t(3.0, 0.8))


def test_discrete_soft_value_exact_expectation() -> None:
    # π = (0.5, 0.5), log π = log 0.5, Q = (1, 3), α = 1:
    #   Σ π(Q − log π) = 0.5*(1 + ln2) + 0.5*(3 + ln2) = 2 + ln2
    # π = (1, 0) in the limit -> Q(a0) (take log π = (0, -50), π(a1)=0 contributes 0) = 5
    probs = t(0.5, 0.5, 1.0, 0.0).reshape(2, 2)
    log_probs = torch.stack([t(math.log(0.5), math.log(0.5)), t(0.0, -50.0)])
    q = t(1.0, 3.0, 5.0, 9.0).reshape(2, 2)
    v = discrete_soft_value(q, probs, log_probs, 1.0)
    assert v.shape == (2,)
    torch.testing.assert_close(v, t(2.0 + math.log(2.0), 5.0))


# -------------------------------------------------------------------------------- TD3 smoothing


def test_td3_smoothing_with_given_noise() -> None:
    # c=0.5, bounds [-1, 1]:
    #   0.2 + clip(0.1)      = 0.3
    #   0.2 + clip(0.9)=0.5  = 0.7
    #   0.9 + clip(0.3)      = 1.2 -> 1.0
    #  -0.8 + clip(-2)=-0.5  = -1.3 -> -1.0
    mu = t(0.2, 0.2, 0.9, -0.8)
    a = td3_smoothed_target_action(mu, 0.2, 0.5, -1.0, 1.0, noise=t(0.1, 0.9, 0.3, -2.0))
    torch.testing.assert_close(a, t(0.3, 0.7, 1.0, -1.0))


def test_td3_smoothing_per_dimension_bounds() -> None:
    mu = t(1.5, 1.5)
    a = td3_smoothed_target_action(mu, 0.1, 0.5, low=t(-2.0, -1.0), high=t(2.0, 1.0), noise=t(0.4, 0.4))
    torch.testing.assert_close(a, t(1.9, 1.0))


def test_td3_smoothing_drawn_noise_is_clipped_and_seeded() -> None:
    mu = torch.zeros(10_000, 2)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a1 = td3_smoothed_target_action(mu, 0.2, 0.5, -1.0, 1.0, generator=g1)
    a2 = td3_smoothed_target_action(mu, 0.2, 0.5, -1.0, 1.0, generator=g2)
    torch.testing.assert_close(a1, a2)
    assert a1.abs().max() <= 0.5
    assert a1.std().item() == pytest.approx(0.2, rel=0.05)  # clipping at 2.5σ barely shrinks σ


# ------------------------------------------------------------------------------------ actor losses


def test_ddpg_policy_loss_and_gradient() -> None:
    q = t(1.0, 3.0).requires_grad_()
    loss = ddpg_policy_loss(q)
    assert loss.item() == pytest.approx(-2.0)
    loss.backward()
    torch.testing.assert_close(q.grad, t(-0.5, -0.5))


def test_offpolicy_ac_policy_loss_detaches_q() -> None:
    # -(( -1*2) + (-0.5*4))/2 = 2
    log_prob = t(-1.0, -0.5).requires_grad_()
    q = t(2.0, 4.0).requires_grad_()
    loss = offpolicy_ac_policy_loss(log_prob, q)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, t(-1.0, -2.0))  # -Q_i / N
    assert q.grad is None


def test_sac_policy_loss() -> None:
    # mean(0.1*(-2) - 1, 0.1*0 - 3) = mean(-1.2, -3) = -2.1
    q = t(1.0, 3.0).requires_grad_()
    log_alpha = torch.tensor(math.log(0.1), dtype=torch.float64, requires_grad=True)
    loss = sac_policy_loss(q, t(-2.0, 0.0), log_alpha.exp())
    assert loss.item() == pytest.approx(-2.1)
    loss.backward()
    torch.testing.assert_close(q.grad, t(-0.5, -0.5))
    assert log_alpha.grad is None


def test_discrete_sac_policy_loss() -> None:
    # row 0: π=(0.5,0.5), log π=ln0.5, Q=(1,3), α=1 -> 0.5*(-ln2 - 1) + 0.5*(-ln2 - 3) = -ln2 - 2
    # row 1: π=(1,0), log π=(0,-50), Q=(5,9)        -> 1*(0 - 5) = -5
    probs = t(0.5, 0.5, 1.0, 0.0).reshape(2, 2).requires_grad_()
    log_probs = torch.stack([t(math.log(0.5), math.log(0.5)), t(0.0, -50.0)])
    q = t(1.0, 3.0, 5.0, 9.0).reshape(2, 2).requires_grad_()
    loss = discrete_sac_policy_loss(q, probs, log_probs, 1.0)
    assert loss.item() == pytest.approx((-math.log(2.0) - 2.0 - 5.0) / 2)
    loss.backward()
    assert q.grad is None and probs.grad is not None


def test_discrete_sac_policy_loss_from_logits_prefers_high_q() -> None:
    # A step of gradient descent on the logits must move probability toward the higher-Q action.
    logits = torch.zeros(1, 2, requires_grad=True)
    probs, log_probs = torch.softmax(logits, -1), torch.log_softmax(logits, -1)
    discrete_sac_policy_loss(torch.tensor([[0.0, 1.0]]), probs, log_probs, 0.1).backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]


# ------------------------------------------------------------------------------- temperature losses


def test_sac_temperature_loss_value_and_gradient() -> None:
    # log α = ln 0.5, log π = (-1, -3), H̄ = -2: loss = -ln0.5 * mean(-3, -5) = ln0.5 * 4 = -4 ln2
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = torch.tensor([-1.0, -3.0], requires_grad=True)
    loss = sac_temperature_loss(log_alpha, log_prob, -2.0)
    assert loss.item() == pytest.approx(-4.0 * math.log(2.0))
    loss.backward()
    # ∂L/∂log α = Ĥ − H̄ = mean(1, 3) − (−2) = 4
    assert log_alpha.grad.item() == pytest.approx(4.0)
    assert log_prob.grad is None


@pytest.mark.parametrize("entropy, target, alpha_goes_up", [(-3.0, -1.0, True), (1.0, -1.0, False)])
def test_sac_temperature_gradient_sign(entropy: float, target: float, alpha_goes_up: bool) -> None:
    # Entropy below target -> gradient descent raises log α (more exploration bonus), and vice versa.
    log_alpha = torch.tensor(0.0, requires_grad=True)
    log_prob = torch.full((8,), -entropy)
    sac_temperature_loss(log_alpha, log_prob, target).backward()
    new_log_alpha = log_alpha.item() - 0.1 * log_alpha.grad.item()
    assert (new_log_alpha > 0.0) is alpha_goes_up


def test_discrete_sac_temperature_loss() -> None:
    # π=(0.5,0.5): Σ π log π = ln0.5 = -ln2 (entropy ln2); H̄ = 0.3; log α = 2:
    #   loss = -2 * (-ln2 + 0.3);  ∂L/∂log α = ln2 − 0.3 > 0 (entropy above target -> α decreases)
    log_alpha = torch.tensor(2.0, requires_grad=True)
    probs = torch.full((3, 2), 0.5)
    log_probs = torch.full((3, 2), math.log(0.5))
    loss = discrete_sac_temperature_loss(log_alpha, probs, log_probs, 0.3)
    assert loss.item() == pytest.approx(-2.0 * (-math.log(2.0) + 0.3))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(math.log(2.0) - 0.3)


# ------------------------------------------------------------------------------------- target nets


def _nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in online.parameters():
            p.fill_(4.0)
        for p in target.parameters():
            p.fill_(0.0)
    return online, target


def test_polyak_hand_numbers() -> None:
    # τ=0.25: 0.25*4 + 0.75*0 = 1;  again: 0.25*4 + 0.75*1 = 1.75
    online, target = _nets()
    polyak_update_(target.parameters(), online.parameters(), 0.25)
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1.0))
    polyak_update_(target.parameters(), online.parameters(), 0.25)
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1.75))
    for p in online.parameters():  # online side untouched
        torch.testing.assert_close(p, torch.full_like(p, 4.0))


def test_polyak_tau_one_is_hard_copy_and_tau_zero_is_noop() -> None:
    torch.manual_seed(0)
    online, target = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    before = [p.detach().clone() for p in target.parameters()]
    polyak_update_(target.parameters(), online.parameters(), 0.0)
    for p, b in zip(target.parameters(), before, strict=True):
        assert torch.equal(p, b)
    polyak_update_(target.parameters(), online.parameters(), 1.0)
    for p, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(p, o)


def test_polyak_plain_tensors_and_no_autograd_tracking() -> None:
    target = [torch.tensor([0.0, 8.0]), torch.tensor([[2.0]])]
    online = [torch.tensor([4.0, 0.0]), torch.tensor([[6.0]])]
    polyak_update_(target, online, 0.25)
    torch.testing.assert_close(target[0], torch.tensor([1.0, 6.0]))
    torch.testing.assert_close(target[1], torch.tensor([[3.0]]))
    online_net, target_net = _nets()
    polyak_update_(target_net.parameters(), online_net.parameters(), 0.5)
    assert all(p.grad_fn is None and p.requires_grad for p in target_net.parameters())


def test_polyak_validates_inputs() -> None:
    with pytest.raises(ValueError):
        polyak_update_([torch.zeros(2)], [torch.zeros(2)], 1.5)
    with pytest.raises(ValueError):
        polyak_update_([torch.zeros(2)], [torch.zeros(2), torch.zeros(2)], 0.5)
    with pytest.raises(ValueError):
        polyak_update_([torch.zeros(2)], [torch.zeros(3)], 0.5)


def test_hard_update_copies_exactly() -> None:
    torch.manual_seed(1)
    online, target = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    hard_update_(target.parameters(), online.parameters())
    for p, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(p, o) and p.data_ptr() != o.data_ptr()
    ints_t, ints_o = [torch.tensor(0)], [torch.tensor(7)]  # e.g. BatchNorm num_batches_tracked
    hard_update_(ints_t, ints_o)
    assert ints_t[0].item() == 7


# ------------------------------------------------------------------- critic regression, AC baseline


def test_critic_regression_loss_sums_half_mse_over_critics() -> None:
    # critic 1: ½((1−2)² + (2−2)²)/2 = 0.25; critic 2: ½((3−2)² + (0−2)²)/2 = 1.25 -> 1.5
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]], dtype=torch.float64)
    assert critic_regression_loss(q, t(2.0, 2.0)).item() == pytest.approx(1.5)
    assert critic_regression_loss(q[0], t(2.0, 2.0)).item() == pytest.approx(0.25)  # one critic [B]


def test_critic_regression_loss_rejects_silent_broadcast() -> None:
    with pytest.raises(ValueError, match="must be"):
        critic_regression_loss(t(1.0, 2.0).unsqueeze(-1), t(1.0, 2.0))  # [B, 1] critic vs [B] target


def test_leave_one_out_baseline_hand_numbers() -> None:
    # K=3 samples of one state: q = 1, 2, 6 -> baselines (2+6)/2=4, (1+6)/2=3.5, (1+2)/2=1.5
    q = t(1.0, 2.0, 6.0).unsqueeze(-1)
    torch.testing.assert_close(leave_one_out_baseline(q), t(4.0, 3.5, 1.5).unsqueeze(-1))
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_baseline(q[:1])
