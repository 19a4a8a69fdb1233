import pytest

from rlx.algos.ppo import PPOConfig
from rlx.config.schema import NetworkConfig
from rlx.config.typed import build
from rlx.errors import UserError


def test_build_converts_ints_to_floats_and_keeps_defaults():
    hp = build(PPOConfig, {"lr": 1, "n_steps": 32}, "algo")
    assert hp.lr == 1.0 and isinstance(hp.lr, float) and hp.n_steps == 32 and hp.clip_eps == 0.2


@pytest.mark.parametrize(
    "values, message",
    [
        ({"clip_esp": 0.1}, "unknown key 'algo.clip_esp': did you mean 'algo.clip_eps'?"),
        ({"lr": "abc"}, "algo.lr='abc': expected float"),
        ({"n_steps": 2.5}, "algo.n_steps=2.5: expected int"),
        ({"clip_eps": 0.0}, "algo.clip_eps=0.0: out of range, allowed (0, inf)"),
        ({"gamma": 1.5}, "algo.gamma=1.5: out of range, allowed [0, 1]"),
        ({"gae_lambda": -0.1}, "algo.gae_lambda=-0.1: out of range, allowed [0, 1]"),
        ({"anneal_lr": 1}, "algo.anneal_lr=1: expected bool"),
        ({"target_kl": float("nan")}, "algo.target_kl=nan"),
    ],
)
def test_build_rejects_bad_values_with_one_line(values, message):
    with pytest.raises(UserError) as e:
        build(PPOConfig, values, "algo")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_optional_and_list_and_literal_fields():
    assert build(PPOConfig, {"target_kl": None}, "algo").target_kl is None
    assert build(NetworkConfig, {"hidden_sizes": [32]}, "network").hidden_sizes == [32]
    with pytest.raises(UserError, match="network.hidden_sizes"):
        build(NetworkConfig, {"hidden_sizes": [0]}, "network")
    with pytest.raises(UserError, match="expected 'tanh'"):
        build(NetworkConfig, {"activation": "swish"}, "network")
