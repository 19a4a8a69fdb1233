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


def _pixel_rollout(k: int, n: int, t: int, shape: tuple[int, ...], n_actions: int, seed: int):
    """A random [T, K*N] rollout of uint8 frames (member-major envs) with episode ends and truncations."""
    from rlx.buffers.rollout import Rollout

    g = torch.Generator().manual_seed(seed)
    m = k * n
    done = (torch.rand(t, m, generator=g) < 0.15).float()
    return Rollout(obs=torch.randint(0, 256, (t, m, *shape), generator=g, dtype=torch.uint8),
                   actions=torch.randint(0, n_actions, (t, m), generator=g),
                   log_probs=-torch.rand(t, m, generator=g) - 0.3, values=torch.randn(t, m, generator=g),
                   rewards=torch.randn(t, m, generator=g), terminated=done * (torch.rand(t, m, generator=g) < 0.6).float(),
                   done=done, next_values=torch.randn(t, m, generator=g))


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_pixel_population_update_equals_each_members_own_update(algo: str) -> None:
    """K members with a stacked MinAtar CNN updated as one population == K plain runs (1e-5): weights
    (CNN included: it is in the [K, P] buffer, under the stacked optimizer and per-member clipping) and
    metrics; member 1 is clipped hard. uint8 frames, scaled by 1/255 inside the encoder."""
    import dataclasses

    from rlx.algos.a2c import A2C, A2CConfig
    from rlx.algos.ppo import PPO, PPOConfig
    from rlx.buffers.rollout import Rollout
    from rlx.config.schema import NetworkConfig
    from rlx.envs.make import EnvSpec
    from rlx.members import member_state

    shape, n_actions = (4, 10, 10), 3
    spec = EnvSpec("pixels", gym.spaces.Box(0, 255, shape, np.uint8), gym.spaces.Discrete(n_actions))
    net = NetworkConfig(hidden_sizes=[16], encoder="minatar_cnn")
    k, n, t = 2, 2, 8
    knobs = [dict(lr=1e-3, max_grad_norm=0.5, ent_coef=0.01), dict(lr=3e-3, max_grad_norm=0.01, ent_coef=0.0)]
    if algo == "ppo":
        cls, hps = PPO, [PPOConfig(n_steps=t, batch_size=t * n, n_epochs=2, normalize_obs=False, **m) for m in knobs]
    else:
        cls, hps = A2C, [A2CConfig(n_steps=t, normalize_obs=False, **m) for m in knobs]
    pop = cls(spec, hps, net, torch.device("cpu"), seeds=[0, 1])
    singles = [cls(spec, h, net, torch.device("cpu"), seeds=[i]) for i, h in enumerate(hps)]
    for i, single in enumerate(singles):  # member i starts as its own plain run
        theirs = member_state(pop.model.state_dict(), i, k)
        assert len(theirs) == len(single.model.state_dict())
        for name, a in single.model.state_dict().items():
            torch.testing.assert_close(theirs_for(name, a, theirs), a, rtol=0, atol=0)
    for step in range(2):
        r = _pixel_rollout(k, n, t, shape, n_actions, seed=step)
        pop_metrics = pop.update(r, progress=0.25 * step)
        for i, single in enumerate(singles):
            own = Rollout(**{f.name: getattr(r, f.name)[:, i * n : (i + 1) * n].clone() for f in dataclasses.fields(r)})
            (metrics,) = single.update(own, progress=0.25 * step)
            for key, value in metrics.items():
                assert pop_metrics[i][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (i, key)
    for i, single in enumerate(singles):
        theirs = member_state(pop.model.state_dict(), i, k)
        for name, a in single.model.state_dict().items():
            assert_close_to_scale(theirs_for(name, a, theirs), a)


def theirs_for(name: str, plain: torch.Tensor, member: dict) -> torch.Tensor:
    """The population member's tensor for the plain model's ``name``: the same name and shape (a plain run
    is a population of one, its CNN a StackedCNNEncoder of one), so a member's checkpoint is a plain run's."""
    assert member[name].shape == plain.shape, name
    return member[name]


def test_member_view_of_a_pixel_population_acts_as_its_member() -> None:
    """rlx.members.member_view on a model with a StackedCNNEncoder: member k alone == row k of the stack."""
    from rlx.algos.ppo import PPO, PPOConfig
    from rlx.config.schema import NetworkConfig
    from rlx.envs.make import EnvSpec
    from rlx.members import member_view

    shape = (4, 10, 10)
    spec = EnvSpec("pixels", gym.spaces.Box(0, 255, shape, np.uint8), gym.spaces.Discrete(3))
    net = NetworkConfig(hidden_sizes=[16], encoder="minatar_cnn")
    pop = PPO(spec, [PPOConfig(n_steps=8, batch_size=16, normalize_obs=False, lr=lr) for lr in (1e-3, 3e-3)], net,
              torch.device("cpu"), seeds=[0, 1])
    assert isinstance(pop.model.encoder, StackedCNNEncoder)
    obs = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    with torch.inference_mode():
        whole = pop.model.value(obs.expand(2, *obs.shape))
        for k in range(2):
            torch.testing.assert_close(member_view(pop.model, k, 2).value(obs.unsqueeze(0))[0], whole[k], rtol=0, atol=1e-5)
