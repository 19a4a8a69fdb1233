"""Dict observations (issue 26): packing, per-key storage (uint8 images), the combined encoder, normalize_obs per
vector key, populations (the member dimension), the refusal of the algorithms that do not take them."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.algos.a2c import A2C, A2CConfig
from rlx.algos.common import ActorCritic
from rlx.algos.ppo import PPO, PPOConfig
from rlx.app.validate import check_dict_keys
from rlx.buffers.rollout import Rollout, RolloutBuffer
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec, env_spec, make_vec_env
from rlx.errors import UserError
from rlx.networks.dict_obs import PackedDict, dict_layout, obs_map
from rlx.networks.encoders import CNNEncoder, DictEncoder, EncoderFactory
from rlx.networks.mlp import ObsNormalizer
from tests.conftest import run_cli
from tests.unit.test_population import state_equals_members, update_equals_members

CPU = torch.device("cpu")
IMAGE = gym.spaces.Box(0, 255, (2, 5, 5), np.uint8)
SPACE = gym.spaces.Dict({"vec": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), "image": IMAGE,
                         "goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
PACKED = PackedDict(SPACE)
LAYOUT = PACKED.layout


def _dict_obs(g: torch.Generator, *lead: int) -> dict[str, torch.Tensor]:
    return {"goal": torch.rand(*lead, 2, generator=g) * 2 - 1, "image": torch.randint(0, 256, (*lead, 2, 5, 5), generator=g,
                                                                                        dtype=torch.uint8),
            "vec": torch.randn(*lead, 3, generator=g) * 3 + 1}


def _pack(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([obs[k].float().flatten(obs[k].dim() - len(LAYOUT.by_name[k].shape)) for k in LAYOUT.names], -1)


def test_the_layout_packs_in_the_spaces_key_order_and_unpacks_exactly():
    assert LAYOUT.names == ["goal", "image", "vec"]  # gymnasium sorts a plain dict's keys
    assert PACKED.shape == (2 + 50 + 3,) and PACKED.dtype == np.float32
    g = torch.Generator().manual_seed(0)
    one = {k: v.numpy() for k, v in _dict_obs(g).items()}
    packed = LAYOUT.pack(one)
    assert packed.dtype == np.float32 and PACKED.contains(np.clip(packed, PACKED.low, PACKED.high))
    back = LAYOUT.unpack_numpy(packed)
    assert back["image"].dtype == np.uint8 and np.array_equal(back["image"], one["image"])
    assert np.array_equal(back["vec"], one["vec"]) and np.array_equal(back["goal"], one["goal"])
    unpacked = LAYOUT.unpack(torch.from_numpy(np.stack([packed, packed])))
    assert unpacked["image"].shape == (2, 2, 5, 5) and torch.equal(unpacked["image"][1].to(torch.uint8),
                                                                    torch.from_numpy(one["image"]))


def test_the_rollout_stores_each_key_images_as_uint8_and_hands_out_the_dict():
    t, n = 4, 3
    buffer = RolloutBuffer(t, n, PACKED.shape, (2,), torch.float32, CPU, obs_layout=LAYOUT)
    g = torch.Generator().manual_seed(1)
    steps = [_dict_obs(g, n) for _ in range(t)]
    for obs in steps:
        buffer.add(_pack(obs).numpy(), torch.zeros(n, 2), torch.zeros(n), torch.zeros(n), np.ones(n), np.zeros(n), np.zeros(n))
    rollout = buffer.finish(torch.zeros(n))
    assert isinstance(rollout.obs, dict) and set(rollout.obs) == {"goal", "image", "vec"}
    assert rollout.obs["image"].dtype == torch.uint8 and rollout.obs["vec"].dtype == torch.float32
    for key in rollout.obs:
        expected = torch.stack([s[key] for s in steps])
        assert rollout.obs[key].shape == (t, n, *LAYOUT.by_name[key].shape)
        assert torch.equal(rollout.obs[key], expected.to(rollout.obs[key].dtype)), key


def test_the_dict_encoder_is_the_concatenation_of_each_keys_encoder():
    """network.dict_keys chooses and orders the keys; each image key has its own CNN (the one built from that key's
    Box alone, with the same RNG draws), vector keys pass as they are; the packed vector and the stored dict
    give the same features."""
    factory = EncoderFactory("minatar_cnn", PACKED, dict_keys=["vec", "image"])
    torch.manual_seed(3)
    enc = factory()
    assert isinstance(enc, DictEncoder) and factory.features == 3 + 128 and "goal" not in enc.keys
    torch.manual_seed(3)
    cnn = EncoderFactory("minatar_cnn", IMAGE)()
    assert isinstance(cnn, CNNEncoder)
    g = torch.Generator().manual_seed(2)
    obs = _dict_obs(g, 7)
    expected = torch.cat([obs["vec"], cnn(obs["image"])], -1)
    torch.testing.assert_close(enc(obs), expected, rtol=0, atol=0)
    torch.testing.assert_close(enc(_pack(obs)), expected, rtol=1e-6, atol=1e-6)
    # all keys (null) with mlp: the image flattened and scaled by 1/255, in the space's order
    flat = EncoderFactory("mlp", PACKED)()
    assert isinstance(flat, DictEncoder) and not list(flat.parameters())
    torch.testing.assert_close(flat(obs), torch.cat([obs["goal"], obs["image"].float().flatten(1) / 255, obs["vec"]], -1))


def test_normalize_obs_standardizes_the_vector_keys_and_leaves_images_untouched():
    spec = EnvSpec("x", PACKED, gym.spaces.Box(-1, 1, (2,), np.float32))
    model = ActorCritic(spec, NetworkConfig(hidden_sizes=[8], encoder="minatar_cnn"), normalize_obs=True)
    g = torch.Generator().manual_seed(4)
    batches = [_dict_obs(g, 16) for _ in range(3)]
    vec_norm, goal_norm = ObsNormalizer((3,)), ObsNormalizer((2,))
    for b in batches:
        model.normalizer.update(_pack(b))
        vec_norm.update(b["vec"])
        goal_norm.update(b["goal"])
    obs = _dict_obs(g, 5)
    seen = LAYOUT.unpack(model.policy_input(_pack(obs)))
    assert torch.equal(seen["image"], obs["image"].float())  # images: the raw bytes, scaled in the CNN
    torch.testing.assert_close(seen["vec"], vec_norm(obs["vec"]))
    torch.testing.assert_close(seen["goal"], goal_norm(obs["goal"]))
    assert not torch.allclose(seen["vec"], obs["vec"])
    assert "keep" not in model.normalizer.state_dict()  # the env's layout, not a statistic: checkpoints unchanged


def _dict_rollout(k: int, n: int, t: int, seed: int) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    m = k * n
    done = (torch.rand(t, m, generator=g) < 0.15).float()
    return Rollout(obs=_dict_obs(g, t, m), actions=torch.randn(t, m, 2, generator=g),
                   log_probs=-torch.rand(t, m, generator=g) - 0.3, values=torch.randn(t, m, generator=g),
                   rewards=torch.randn(t, m, generator=g), terminated=done * (torch.rand(t, m, generator=g) < 0.6).float(),
                   done=done, next_values=torch.randn(t, m, generator=g))


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_dict_population_update_equals_each_members_own_update(algo):
    """K=2 members on Dict rollouts (per-key tensors, a uint8 image key) == each member's plain run: metrics and
    weights/optimizer state (the image read by the mlp encoder: no conv layout to map between stacks)."""
    spec = EnvSpec("x", PACKED, gym.spaces.Box(-1, 1, (2,), np.float32))
    net = NetworkConfig(hidden_sizes=[16, 16], dict_keys=["vec", "image", "goal"])
    k, n, t = 2, 2, 8
    if algo == "ppo":
        cls: type = PPO
        hps = [PPOConfig(n_steps=t, batch_size=8, n_epochs=2, lr=3e-4, clip_eps=0.1),
               PPOConfig(n_steps=t, batch_size=8, n_epochs=2, lr=1e-3, clip_eps=0.3, ent_coef=0.01, max_grad_norm=0.01)]
    else:
        cls = A2C
        hps = [A2CConfig(n_steps=t, lr=7e-4), A2CConfig(n_steps=t, lr=3e-3, gamma=0.9, ent_coef=0.02, max_grad_norm=0.01)]
    pop = cls(spec, hps, net, CPU, seeds=[0, 1])
    singles = [cls(spec, h, net, CPU, seeds=[i]) for i, h in enumerate(hps)]
    for step in range(2):
        update_equals_members(pop, singles, _dict_rollout(k, n, t, seed=step), n, progress=0.25 * step)
    state_equals_members(pop, singles)


def test_a_dict_population_stacks_each_image_keys_cnn_per_member():
    """K=2 with a CNN per image key (stacked over the members, in the [K, P] buffer): member k's features are its
    plain run's, and a population update's metrics are each member's own (1e-4: grouped convolutions)."""
    from rlx.networks.stacked import StackedCNNEncoder

    spec = EnvSpec("x", PACKED, gym.spaces.Box(-1, 1, (2,), np.float32))
    net = NetworkConfig(hidden_sizes=[16], encoder="minatar_cnn")
    k, n, t = 2, 2, 8
    hps = [PPOConfig(n_steps=t, batch_size=8, n_epochs=2), PPOConfig(n_steps=t, batch_size=8, n_epochs=2, lr=1e-3,
                                                                     max_grad_norm=0.01)]
    pop = PPO(spec, hps, net, CPU, seeds=[0, 1])
    singles = [PPO(spec, h, net, CPU, seeds=[i]) for i, h in enumerate(hps)]
    assert isinstance(pop.model.encoder, DictEncoder) and isinstance(pop.model.encoder.encoders["image"], StackedCNNEncoder)
    g = torch.Generator().manual_seed(5)
    obs = _pack(_dict_obs(g, k, 6))  # [K, B, size]
    feats = pop.model.features(obs)
    for i, single in enumerate(singles):
        torch.testing.assert_close(feats[i], single.model.features(obs[i : i + 1])[0], rtol=1e-4, atol=1e-5)
    r = _dict_rollout(k, n, t, seed=0)
    pop_metrics = pop.update(r, progress=0.0)
    for i, single in enumerate(singles):
        cols = slice(i * n, (i + 1) * n)
        own = Rollout(**{f: obs_map(lambda x, c=cols: x[:, c].clone(), getattr(r, f)) for f in r.__dataclass_fields__})
        (metrics,) = single.update(own, progress=0.0)
        for key, value in metrics.items():
            assert pop_metrics[i][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (i, key)


def test_the_point_goal_env_is_packed_with_and_without_an_image_key():
    spec = env_spec("PointGoal-v0")
    layout = dict_layout(spec.observation_space)
    assert layout is not None and layout.names == ["goal", "position"] and spec.obs_shape == (4,)
    spec = env_spec("PointGoal-v0", {"image_size": 6}, encoder="minatar_cnn")
    layout = dict_layout(spec.observation_space)
    assert layout is not None and layout.names == ["goal", "image", "position"] and layout.by_name["image"].uint8
    envs = make_vec_env("PointGoal-v0", 2, seed=0, kwargs={"image_size": 6})
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4 + 36) and obs.dtype == np.float32
    image = layout.unpack_numpy(obs)["image"]
    assert sorted(np.unique(image).tolist()) in ([0, 128, 255], [0, 128])  # goal 255, point 128 (on top)


def test_dict_keys_must_name_the_envs_keys():
    spec = env_spec("PointGoal-v0")
    check_dict_keys(None, spec)
    check_dict_keys(["position"], spec)
    with pytest.raises(UserError, match=r"network.dict_keys: 'velocity' is not a key of env.id=PointGoal-v0's Dict "
                                        r"observation; its keys: goal, position"):
        check_dict_keys(["goal", "velocity"], spec)
    with pytest.raises(UserError, match=r"network.dict_keys=\['goal'\]: env.id=CartPole-v1 has no Dict observation"):
        check_dict_keys(["goal"], env_spec("CartPole-v1"))


@pytest.mark.parametrize("algo", ["trpo", "reinforce"])
def test_an_algorithm_without_dict_observations_refuses_them_in_one_line_before_the_run_dir(tmp_path, algo):
    r = run_cli("train", f"algo={algo}", "env=point_goal", "total_steps=64", "logger.progress=false", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line == (f"rlx: error: algo={algo} does not support Dict observations (env.id=PointGoal-v0: Dict('goal': "
                    f"Box(-1.0, 1.0, (2,), float32), 'position': Box(-1.0, 1.0, (2,), float32))); algorithms that take "
                    f"Dict observations: ppo, a2c, offpolicy_ac, ddpg, td3, sac, sac_v, sac_discrete"), line
    assert list(tmp_path.iterdir()) == []  # no outputs/, no run dir


def test_a_population_trains_and_evaluates_on_a_dict_with_an_image_key_through_the_loop(tmp_path):
    """The whole path: PackDictObs envs, the loop, per-key uint8 storage, a stacked CNN for the image key,
    normalize_obs on the vector keys, each member's evaluation; finite results for both members."""
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job

    dirs = [tmp_path / f"m{seed}" for seed in (0, 1)]
    cfgs = [compose_config(["algo=ppo", "env=point_goal", "+env.kwargs.image_size=6", "network=minatar_cnn",
                            "algo.normalize_obs=true", "env.num_envs=2", "algo.n_steps=32", "algo.batch_size=32",
                            "algo.n_epochs=1", "total_steps=128", f"seed={seed}", "eval.every=0", "eval.episodes=2",
                            "logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0",
                            "logger.tensorboard=false"]) for seed in (0, 1)]
    summaries = train_job(cfgs, dirs)
    assert [s["env_steps"] for s in summaries] == [128, 128]
    assert all(np.isfinite(s["eval_return_mean"]) for s in summaries)
    assert summaries[0]["eval_return_mean"] != summaries[1]["eval_return_mean"]  # two members, two policies
