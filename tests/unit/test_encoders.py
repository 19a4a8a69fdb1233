"""Observation encoders: output shapes, pixel scaling inside the network, validation, every algorithm from pixels."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.algos.registry import ALGOS
from rlx.config.schema import NetworkConfig
from rlx.config.typed import build
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.networks.encoders import EncoderFactory, check_observation_space

PIXELS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.mark.parametrize("name, shape, features", [
    ("nature_cnn", (4, 84, 84), 512),
    ("minatar_cnn", (4, 10, 10), 128),
    ("impala_cnn", (3, 64, 64), 256),
    ("mlp", (4, 10, 10), 400),
])
def test_encoder_output_shapes(name, shape, features):
    factory = EncoderFactory(name, gym.spaces.Box(0, 255, shape, np.uint8))
    enc = factory()
    assert factory.features == features
    x = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    assert enc(x).shape == (5, features)
    assert enc(x.reshape(5, 1, *shape).expand(5, 3, *shape)).shape == (5, 3, features)  # leading batch dims


def test_flat_vectors_with_mlp_have_no_encoder_module():
    factory = EncoderFactory("mlp", gym.spaces.Box(-1, 1, (4,), np.float32))
    assert factory() is None and factory.features == 4


def test_pixels_are_scaled_by_1_over_255_inside_the_network():
    torch.manual_seed(0)
    enc = EncoderFactory("nature_cnn", PIXELS)()
    x = torch.randint(0, 256, (2, *PIXELS.shape), dtype=torch.uint8)
    reference = EncoderFactory("nature_cnn", gym.spaces.Box(0.0, 1.0, PIXELS.shape, np.float32))()  # same shapes, no scaling
    reference.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(x), reference(x.float() / 255.0))
    # the same frames as float32 (the loop's acting path) and as uint8 (the buffers) give the same features
    torch.testing.assert_close(enc(x), enc(x.float()))


@pytest.mark.parametrize("space, encoder, fragment", [
    (gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,))}), "mlp", "observation space Dict"),
    (gym.spaces.Tuple((gym.spaces.Discrete(2),)), "nature_cnn", "observation space Tuple"),
    (gym.spaces.Box(-1, 1, (4,)), "nature_cnn",
     "takes (C, H, W) image observations, but env.id=E has shape (4,); encoders that fit: mlp"),
    (gym.spaces.Box(0, 1, (4, 10, 10), bool), "nature_cnn", "needs H, W >= 36"),
    (gym.spaces.Box(0, 255, (2, 3, 4, 5), np.uint8), "impala_cnn", "shape (2, 3, 4, 5)"),
    (gym.spaces.Box(0, 255, (210, 160, 3), np.uint8), "nature_cnn",
     "looks channels-last (H, W, C); add {_target_: rlx.envs.ChannelsFirst}"),
    (gym.spaces.Box(0, 1, (10, 10, 4), bool), "minatar_cnn", "looks channels-last"),
])
def test_unsupported_observation_spaces_are_one_line_errors(space, encoder, fragment):
    with pytest.raises(UserError) as e:
        check_observation_space(space, encoder, "E")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_small_images_name_the_encoders_that_fit():
    with pytest.raises(UserError, match="encoders that fit: minatar_cnn, impala_cnn, mlp"):
        check_observation_space(gym.spaces.Box(0, 1, (4, 10, 10), bool), "nature_cnn", "MinAtar/Breakout-v1")


def test_normalize_obs_is_refused_for_images():
    from rlx.algos.ppo import PPO

    spec = EnvSpec("img", gym.spaces.Box(0, 255, (2, 10, 10), np.uint8), gym.spaces.Discrete(3))
    with pytest.raises(UserError, match="algo.normalize_obs=true does not apply to image observations"):
        PPO(spec, build(PPO.Config, {"normalize_obs": True}, "algo"), NetworkConfig([], "relu", "minatar_cnn"), CPU)


def _batch_on_policy(algo, obs_space, action_space, steps=8, envs=2):
    from rlx.buffers.rollout import RolloutBuffer

    discrete = isinstance(action_space, gym.spaces.Discrete)
    buf = RolloutBuffer(steps, envs, obs_space.shape, () if discrete else action_space.shape,
                        torch.long if discrete else torch.float32, CPU, obs_dtype=torch.uint8)
    for t in range(steps):
        obs = np.stack([obs_space.sample() for _ in range(envs)]).astype(np.uint8)
        a, logp, v = algo.explore(torch.as_tensor(obs, dtype=torch.float32))
        done = np.array([t % 3 == 2, False])
        buf.add(obs, a, logp, v, np.ones(envs, np.float32), done, done)
    obs = np.stack([obs_space.sample() for _ in range(envs)]).astype(np.float32)
    return buf.finish(algo.value(torch.as_tensor(obs)))


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_every_algorithm_acts_and_updates_from_pixels(name):
    """Each algorithm, on the action space it takes, builds its networks on a CNN encoder, acts on
    image observations and makes an update from uint8 buffers without error, changing its parameters."""
    cls = ALGOS[name]
    discrete = "discrete" in cls.action_spaces
    action_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)
    obs_space = gym.spaces.Box(0, 255, (2, 10, 10), np.uint8)
    spec = EnvSpec("img", obs_space, action_space)
    torch.manual_seed(0)
    hp = {"batch_size": 16} if cls.loop == "off_policy" else {}
    if name == "ac_batch":
        hp["critic_steps"] = 2
    if name == "a3c":
        hp["num_workers"] = 1
    if "normalize_obs" in {f.name for f in __import__("dataclasses").fields(cls.Config)}:
        hp["normalize_obs"] = False  # images are scaled by 1/255 in the network (ac_online's default is true)
    algo = cls(spec, build(cls.Config, hp, "algo"), NetworkConfig([16], "relu", "minatar_cnn"), CPU)
    obs = torch.as_tensor(np.stack([obs_space.sample() for _ in range(4)]), dtype=torch.float32)
    a = algo.act(obs, True)
    assert a.shape[0] == 4
    if cls.loop == "async":  # the update runs in a worker's local copy
        algo = algo.worker(0)
    before = [p.detach().clone() for p in _params(algo)]
    if cls.loop == "off_policy":
        from rlx.buffers.replay import ImageReplayBuffer

        buf = ImageReplayBuffer(64, obs_space.shape, () if discrete else action_space.shape, discrete, CPU)
        for _ in range(16):
            o = np.stack([obs_space.sample() for _ in range(2)])
            acts = np.array([action_space.sample() for _ in range(2)])
            buf.add(o, acts, np.stack([obs_space.sample() for _ in range(2)]), np.ones(2), np.zeros(2, bool),
                    np.zeros(2, bool), {})
        batch = buf.sample(16)
        assert batch.obs.dtype == torch.uint8
        metrics = algo.update(batch, 0.0)
    else:
        rollout = _batch_on_policy(algo, obs_space, action_space)
        assert rollout.obs.dtype == torch.uint8
        metrics = algo.update(rollout, 0.0)
    if isinstance(metrics, list):  # a population algorithm (PPO): one dict per member, here one
        (metrics,) = metrics
    assert all(np.isfinite(v) for v in metrics.values())
    after = list(_params(algo))
    assert any(not torch.equal(b, p) for b, p in zip(before, after, strict=True))


def _params(algo):
    if hasattr(algo, "model"):
        return list(algo.model.parameters())
    return list(algo.actor.parameters()) + list(algo.critic.parameters())
