"""The fused MLP (rlx/networks/fused.py) against the plain nn.Sequential it replaces."""
import copy

import pytest
import torch
from torch import nn

from rlx.networks.fused import FusedMLP
from rlx.networks.mlp import ACTIVATIONS, MLP, mlp


def reference(net: MLP) -> nn.Sequential:
    """The same layers, evaluated op by op by nn.Sequential / autograd."""
    return nn.Sequential(*[copy.deepcopy(m) for m in net])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradcheck_float64(activation):
    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    params = [torch.randn(5, 3), torch.randn(5), torch.randn(4, 5), torch.randn(4), torch.randn(2, 4), torch.randn(2)]
    params = [p.double().requires_grad_() for p in params]
    assert torch.autograd.gradcheck(lambda x, *p: FusedMLP.apply(activation, x, *p), (x, *params))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("input_grad", [False, True])
def test_matches_sequential_forward_and_gradients(activation, input_grad):
    torch.manual_seed(1)
    net = mlp(4, 3, [64, 64], activation)
    ref = reference(net)
    x = torch.randn(2, 9, 4)  # leading dims are flattened and restored
    x1, x2 = x.clone().requires_grad_(input_grad), x.clone().requires_grad_(input_grad)
    out, expected = net(x1), ref(x2)
    assert out.shape == (2, 9, 3)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    weight = torch.randn(2, 9, 3)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)
    if input_grad:
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    else:
        assert x1.grad is None


def test_tanh_is_tanh_across_the_range():
    z = torch.linspace(-30, 30, 100_001)
    out = MLP([1, 1, 1], "tanh")
    with torch.no_grad():
        for layer in out.linears:
            layer.weight.fill_(1.0)
            layer.bias.zero_()
        hidden = out(z.unsqueeze(-1)).squeeze(-1)  # = tanh(z) through an identity output layer
    assert (hidden - torch.tanh(z)).abs().max() < 1e-6


def test_no_graph_without_grad_and_frozen_params():
    net = mlp(4, 2, [8], "tanh")
    with torch.no_grad():
        assert net(torch.randn(3, 4)).grad_fn is None
    net.requires_grad_(False)
    assert net(torch.randn(3, 4)).grad_fn is None


@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS) - {"tanh", "relu"}))
def test_other_activations_run_as_sequential(activation):
    net = mlp(4, 2, [8], activation)
    ref = reference(net)
    x = torch.randn(5, 4)
    torch.testing.assert_close(net(x), ref(x))


def test_state_dict_keys_are_sequentials():
    assert list(mlp(4, 2, [8, 8]).state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
