"""StackedCNNEncoder: K members' CNN encoders in one module == the K ordinary encoders (outputs, gradients)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.networks.encoders import EncoderFactory
from rlx.networks.stacked import StackedCNNEncoder, StackedConv2d


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 1e-5 of the tensor's scale: impala's residual trunk reaches outputs ~40, where float32
    summation order (grouped vs separate convolutions) alone moves values by ~1e-6 relative."""
    scale = max(1.0, float(expected.detach().abs().max()))
    torch.testing.assert_close(actual, expected, atol=1e-5 * scale, rtol=0)


SHAPES = {"nature_cnn": (4, 40, 40), "minatar_cnn": (4, 10, 10), "impala_cnn": (3, 16, 16)}


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("pixels", [True, False])
def test_stacked_cnn_matches_member_encoders(name: str, pixels: bool) -> None:
    torch.manual_seed(0)
    shape, k, b = SHAPES[name], 3, 5
    space = (gym.spaces.Box(0, 255, shape, np.uint8) if pixels else gym.spaces.Box(0, 1, shape, np.bool_))
    factory = EncoderFactory(name, space)
    members = [factory() for _ in range(k)]
    stacked = StackedCNNEncoder.from_encoders(members)
    obs = (torch.randint(0, 256, (k, b, *shape), dtype=torch.uint8) if pixels
           else torch.randint(0, 2, (k, b, *shape)).bool())
    out = stacked(obs)
    expected = torch.stack([m(obs[i]) for i, m in enumerate(members)])
    assert_close_to_scale(out, expected)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    grads = [p.grad for p in stacked.parameters()]
    assert all(g is not None for g in grads)
    # The final linear layer: stacked weight [K, in, F] is each member's weight transposed.
    for i, m in enumerate(members):
        assert_close_to_scale(stacked.weight.grad[i], m.linear.weight.grad.t())
        assert_close_to_scale(stacked.bias.grad[i, 0], m.linear.bias.grad)
    stacked_convs = [mod for mod in stacked.trunk.modules() if isinstance(mod, StackedConv2d)]
    for conv_index, sconv in enumerate(stacked_convs):
        for i, m in enumerate(members):
            conv = [c for c in m.trunk.modules() if isinstance(c, torch.nn.Conv2d)][conv_index]
            assert_close_to_scale(sconv.weight.grad[i], conv.weight.grad)
            assert_close_to_scale(sconv.bias.grad[i], conv.bias.grad)
    assert stacked_convs


def test_stacked_cnn_extra_batch_dims() -> None:
    factory = EncoderFactory("minatar_cnn", gym.spaces.Box(0, 1, (4, 10, 10), np.bool_))
    members = [factory() for _ in range(2)]
    obs = torch.randint(0, 2, (2, 3, 5, 4, 10, 10)).bool()
    out = StackedCNNEncoder.from_encoders(members)(obs)
    assert out.shape == (2, 3, 5, 128)
    assert_close_to_scale(out[1], members[1](obs[1]))
