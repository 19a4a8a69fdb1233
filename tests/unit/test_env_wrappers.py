"""env.wrappers / env.train_wrappers, the Atari and MinAtar pipelines, and their one-line errors."""
import gymnasium as gym
import numpy as np
import pytest

from rlx.envs.make import ChannelsFirst, EpisodicLife, env_spec, make_vec_env
from rlx.errors import UserError
from rlx.train.evaluation import Evaluator

ATARI = [{"_target_": "gymnasium.wrappers.AtariPreprocessing", "noop_max": 30, "frame_skip": 4, "screen_size": 84,
          "terminal_on_life_loss": False, "grayscale_obs": True, "scale_obs": False},
         {"_target_": "gymnasium.wrappers.FrameStackObservation", "stack_size": 4}]
CLIP = [{"_target_": "gymnasium.wrappers.ClipReward", "min_reward": -1, "max_reward": 1}]


def test_wrappers_list_builds_the_same_env_as_hand_applied_wrappers():
    wrappers = [{"_target_": "gymnasium.wrappers.FrameStackObservation", "stack_size": 3},
                {"_target_": "gymnasium.wrappers.ClipReward", "min_reward": 0.0, "max_reward": 0.5}]
    envs = make_vec_env("CartPole-v1", 2, 7, wrappers=wrappers)
    by_hand = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.ClipReward(gym.wrappers.FrameStackObservation(gym.make("CartPole-v1"), 3), 0.0, 0.5)] * 2,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    a, _ = by_hand.reset(seed=7)
    b, _ = envs.reset(seed=7)
    assert envs.single_observation_space == by_hand.single_observation_space and b.shape == (2, 3, 4)
    rng = np.random.default_rng(0)
    for _ in range(300):  # across episode ends
        act = rng.integers(0, 2, 2)
        ra = by_hand.step(act)
        rb = envs.step(act)
        for x, y in zip(ra[:4], rb[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert set(np.unique(rb[1])) <= {0.5}


def test_train_wrappers_apply_to_training_envs_only():
    """Evaluation runs env.wrappers but not env.train_wrappers: it reports the real return."""
    clip = [{"_target_": "gymnasium.wrappers.ClipReward", "min_reward": 0.0, "max_reward": 0.25}]
    train = make_vec_env("CartPole-v1", 1, 0, train_wrappers=clip)
    assert train.step(np.array([0]))[1][0] == 0.25
    returns = Evaluator("CartPole-v1", 2, 0, "cpu", max_episode_steps=20, wrappers=[])(
        lambda obs, det: __import__("torch").zeros(obs.shape[0], dtype=__import__("torch").long))
    assert all(r == int(r) and r > 1 for r in returns)  # unclipped: 1 per step


@pytest.mark.parametrize("entry, fragment", [
    ({"stack_size": 3}, "env.wrappers[0]={'stack_size': 3}: expected a mapping with '_target_"),
    ({"_target_": "gymnasium.wrappers.NoSuchWrapper"}, "env.wrappers[0]._target_=gymnasium.wrappers.NoSuchWrapper: not found"),
    ({"_target_": "no_such_pkg.Wrapper"}, "cannot import module 'no_such_pkg'"),
    ({"_target_": "gymnasium.wrappers.FrameStackObservation", "stack_sise": 3},
     "env.wrappers[0] (gymnasium.wrappers.FrameStackObservation)"),
])
def test_bad_wrapper_entries_are_one_line_errors(entry, fragment):
    with pytest.raises(UserError) as e:
        env_spec("CartPole-v1", wrappers=[entry])
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("env_id, module, extra", [("ALE/Pong-v5", "ale_py", "atari"),
                                                  ("MinAtar/Breakout-v1", "minatar.gym", "minatar")])
def test_missing_extra_is_a_one_line_error(monkeypatch, env_id, module, extra):
    import rlx.envs.make

    real_import = rlx.envs.make.importlib.import_module

    def no_module(name, *args, **kwargs):
        if name == module:
            raise ImportError(f"No module named '{module}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(gym, "registry", {k: v for k, v in gym.registry.items() if not k.startswith(env_id.split("/")[0])})
    monkeypatch.setattr(rlx.envs.make.importlib, "import_module", no_module)
    with pytest.raises(UserError, match=rf"needs the '{extra}' extra .*pip install 'rlx\[{extra}\]'") as e:
        env_spec(env_id)
    assert "\n" not in str(e.value)


def test_minatar_pipeline_gives_channel_first_states():
    spec = env_spec("MinAtar/Breakout-v1", wrappers=[{"_target_": "rlx.envs.ChannelsFirst"}], encoder="minatar_cnn")
    assert spec.obs_shape == (4, 10, 10) and spec.observation_space.dtype == np.bool_ and spec.action_space.n == 3
    env = ChannelsFirst(gym.make("MinAtar/Breakout-v1"))
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()
    np.testing.assert_array_equal(obs, np.transpose(raw, (2, 0, 1)))


def test_atari_pipeline_shapes_and_episodic_life_for_training_only():
    spec = env_spec("ALE/Breakout-v5", {"frameskip": 1}, ATARI, [{"_target_": "rlx.envs.EpisodicLife"}, *CLIP], "nature_cnn")
    assert spec.obs_shape == (4, 84, 84) and spec.observation_space.dtype == np.uint8
    env = EpisodicLife(gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0))
    env.reset(seed=0)
    assert env.lives == 5
    terminated, steps = False, 0
    while not terminated:  # FIRE once, then do nothing: the ball is lost and a life with it
        _, _, terminated, truncated, _ = env.step(1 if steps == 0 else 0)
        steps += 1
        assert not truncated and steps < 5000
    assert env.unwrapped.ale.lives() == 4 and not env.game_over  # "terminated" for the learner only
    env.reset()
    assert env.lives == 4  # the game went on: no emulator reset


def test_reward_normalizer_math_and_state():
    from rlx.envs.make import RewardNormalizer

    norm = RewardNormalizer(2, gamma=0.9, clip=100.0)
    rng = np.random.default_rng(0)
    rets, seen = np.zeros(2), []
    for _t in range(50):
        r, done = rng.normal(3.0, 2.0, 2), rng.random(2) < 0.1
        out = norm(r, done)
        rets = rets * 0.9 + r
        seen.extend(rets.tolist())
        # the variance of every env's discounted return at every step so far, pooled with SB3's
        # starting statistics (mean 0, variance 1, weight 1e-4 of a sample)
        x, c = np.array(seen), 1e-4
        var = (c * 1.0 + x.size * x.var() + x.mean() ** 2 * c * x.size / (c + x.size)) / (c + x.size)
        np.testing.assert_allclose(out, r / np.sqrt(var + 1e-8), rtol=1e-5)
        rets[done] = 0.0
        np.testing.assert_allclose(norm.returns, rets)
    again = RewardNormalizer(2, gamma=0.9, clip=100.0)
    again.load_state_dict(norm.state_dict())
    r = np.array([1.0, -2.0])
    np.testing.assert_array_equal(again(r, np.zeros(2, bool)), norm(r, np.zeros(2, bool)))
    assert np.abs(RewardNormalizer(1, clip=5.0)(np.array([1e6]), np.zeros(1, bool))).max() == 5.0


def test_normalize_reward_is_checkpointed_and_resumes_exactly(tmp_path):
    """PPO CartPole with env.normalize_reward: the statistics are in the checkpoint's loop state, the logged
    returns stay raw, and killed-after-checkpoint + resume == one uninterrupted run."""
    import json
    import shutil

    import torch

    from rlx.config.compose import compose_config
    from rlx.train.driver import resume, train

    args = ["env.normalize_reward=true", "total_steps=2048", "checkpoint.every=1024", "logger.every=256",
            "eval.every=1024", "eval.episodes=2", "logger.wandb.mode=disabled", "logger.progress=false", "device=cpu"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(compose_config(args), full)
    state = torch.load(full / "checkpoints" / "step_1024.pt", weights_only=False)
    norm = state["loop"]["reward_norm"]
    assert norm["count"] > 1000 and norm["var"] > 1.0  # CartPole's discounted returns grow well past 1
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert all(r["episode_return_mean"] >= 8 for r in rows if "episode_return_mean" in r)  # raw: 1 per step
    shutil.copytree(full, cut)
    shutil.copy(cut / "checkpoints" / "step_1024.pt", cut / "checkpoints" / "last.pt")
    resume(cut, ["logger.progress=false"])

    def strip(run):
        return [{k: v for k, v in json.loads(line).items() if k not in ("wall_s", "sps")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert strip(cut) == strip(full)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.equal(a["algo"]["model"][k], b["algo"]["model"][k]) for k in a["algo"]["model"])
    np.testing.assert_array_equal(a["loop"]["reward_norm"]["returns"], b["loop"]["reward_norm"]["returns"])
