"""Flat parameter groups (rlx/networks/flat.py): the optimizer steps one tensor, the module is unchanged."""
import copy

import pytest
import torch
from torch import nn

from rlx.algos.common import gradient_step, make_optimizer
from rlx.networks.flat import flatten_parameters, gather_flat_grads
from rlx.networks.mlp import mlp


def loss_of(net, x):
    return (net(x) ** 2).mean()


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_flat_optimizer_steps_like_the_per_tensor_one(name):
    torch.manual_seed(0)
    net = mlp(4, 2, [16, 16])
    ref = copy.deepcopy(net)
    opt = make_optimizer(net.parameters(), 1e-2, name)
    ref_opt = make_optimizer(ref.parameters(), 1e-2, name, flat=False)
    assert len(opt.param_groups[0]["params"]) == 1
    for _ in range(5):
        x = torch.randn(32, 4)
        for model, optimizer in ((net, opt), (ref, ref_opt)):
            optimizer.zero_grad(set_to_none=True)
            loss_of(model, x).backward()
            gather_flat_grads(optimizer)
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 0.1)
            optimizer.step()
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_members_are_views_and_state_dict_round_trips():
    net = mlp(4, 2, [8])
    flat = flatten_parameters(net.parameters())
    assert flat.numel() == sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        flat.zero_()
    assert all((p == 0).all() for p in net.parameters())
    other = mlp(4, 2, [8])
    net.load_state_dict(other.state_dict())  # copies into the views: the flat tensor sees it
    torch.testing.assert_close(flat, torch.cat([p.reshape(-1) for p in other.parameters()]))


def test_missing_member_gradient_is_zero_and_no_gradient_skips_the_group():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([flatten_parameters([a, b])], lr=1.0)
    gather_flat_grads(opt)
    assert opt.param_groups[0]["params"][0].grad is None  # nothing computed: the optimizer skips it
    (a * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    gather_flat_grads(opt)
    assert opt.param_groups[0]["params"][0].grad.tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert a.grad is None  # moved, so a second gather cannot count it twice
    opt.step()
    assert a.tolist() == [0.0, -1.0, -2.0] and b.tolist() == [1.0, 1.0]


def test_reallocated_member_is_an_error():
    net = mlp(4, 2, [8])
    opt = torch.optim.SGD([flatten_parameters(net.parameters())], lr=1.0)
    net[0].weight.data = net[0].weight.data.clone()  # what .to(other device) would do
    loss_of(net, torch.randn(3, 4)).backward()
    with pytest.raises(RuntimeError, match="re-allocated"):
        gather_flat_grads(opt)


def test_gradient_step_clips_each_group_on_its_own_or_just_steps():
    """rlx's one gradient step: with a max norm each param group (policy, critic) is clipped to it alone
    (torch's clip_grad_norm_ per group, then Adam); without one it is plain backward + step."""
    torch.manual_seed(0)
    policy, critic = mlp(4, 2, [8]), mlp(4, 1, [8])
    ref_policy, ref_critic = copy.deepcopy(policy), copy.deepcopy(critic)
    opt = make_optimizer([{"params": policy.parameters()}, {"params": critic.parameters(), "lr": 3e-2}], 1e-2)
    ref_opt = torch.optim.Adam([{"params": ref_policy.parameters()}, {"params": ref_critic.parameters(), "lr": 3e-2}],
                               lr=1e-2, eps=1e-5)
    for max_norm in (2.0, None, 2.0):
        x = torch.randn(16, 4)
        norm = gradient_step(opt, loss_of(policy, x) + 100 * loss_of(critic, x), max_norm)
        ref_opt.zero_grad()
        (loss_of(ref_policy, x) + 100 * loss_of(ref_critic, x)).backward()
        if max_norm is None:
            assert norm is None
        else:
            group_norms = [nn.utils.clip_grad_norm_(list(m.parameters()), max_norm) for m in (ref_policy, ref_critic)]
            assert group_norms[0] < max_norm < group_norms[1]  # the critic is clipped, the policy not (global: both)
            torch.testing.assert_close(norm, torch.linalg.vector_norm(torch.stack(group_norms)))
        ref_opt.step()
        for p, q in zip([*policy.parameters(), *critic.parameters()], [*ref_policy.parameters(), *ref_critic.parameters()],
                        strict=True):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
