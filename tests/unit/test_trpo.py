"""TRPO's update against hand computations, the trust region on both action kinds, and a short run."""
from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch
from torch.distributions import kl_divergence

from rlx.algos.trpo import TRPO, TRPOConfig
from rlx.buffers.rollout import Rollout
from rlx.config.compose import compose_config
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.train.driver import train
from rlx.train.run import parse_settings

DISCRETE = EnvSpec("Toy-v0", gym.spaces.Box(-10, 10, (2,)), gym.spaces.Discrete(2))
CONTINUOUS = EnvSpec("ToyC-v0", gym.spaces.Box(-10, 10, (3,)), gym.spaces.Box(-1, 1, (2,)))
LINEAR = NetworkConfig(hidden_sizes=[], activation="tanh")


def one_step_rollout(obs, actions, rewards) -> Rollout:
    """[T, 1] rollout of one-step episodes (every step terminal): GAE advantage = r - V(s)."""
    n = len(rewards)
    def col(x):
        return torch.tensor(x, dtype=torch.float32).reshape(n, 1)
    return Rollout(obs=torch.tensor(obs, dtype=torch.float32).reshape(n, 1, -1),
                   actions=torch.tensor(actions).reshape(n, 1, *torch.tensor(actions).shape[1:]),
                   log_probs=torch.zeros(n, 1), values=torch.zeros(n, 1), rewards=col(rewards),
                   terminated=torch.ones(n, 1), done=torch.ones(n, 1), next_values=torch.zeros(n, 1))


def test_natural_step_of_a_uniform_softmax_by_hand():
    # One state (obs = 0: only the policy bias b matters), pi = softmax(b), b = 0. Actions 0 and 1 with
    # advantages +1 and -1 (not normalized, critic V = 0):
    #   g = mean_i A_i (onehot(a_i) - pi) = (0.5, -0.5);  F = diag(pi) - pi pi^T = [[.25, -.25], [-.25, .25]]
    #   g is an eigenvector of F (eigenvalue 0.5): CG gives s = F^+ g = (1, -1), s^T F s = 1,
    #   full step beta s with beta = sqrt(2 delta), then 0.8^k until KL(uniform || softmax(b)) <= delta.
    delta = 0.01
    algo = TRPO(DISCRETE, TRPOConfig(max_kl=delta, cg_damping=0.0, normalize_advantage=False, n_critic_updates=1),
                LINEAR, torch.device("cpu"))
    with torch.no_grad():
        for p in algo.model.policy.parameters():
            p.zero_()
    (metrics,) = algo.update(one_step_rollout([[0.0, 0.0], [0.0, 0.0]], [0, 1], [1.0, -1.0]), 0.0)

    def kl(b):  # KL((0.5, 0.5) || softmax(b, -b)), pi_new(0) = sigmoid(2b)
        p0 = 1 / (1 + math.exp(-2 * b))
        return 0.5 * math.log(0.5 / p0) + 0.5 * math.log(0.5 / (1 - p0))

    k = next(k for k in range(10) if kl(0.8**k * math.sqrt(2 * delta)) <= delta)
    expected = 0.8**k * math.sqrt(2 * delta)
    bias = algo.model.policy.net.member_state_dict(0)["0.bias"]  # member 0 of the stack (a population of one)
    assert bias.tolist() == pytest.approx([expected, -expected], rel=1e-4)
    assert metrics["line_search_accepted"] == 1.0 and metrics["line_search_steps"] == k + 1
    assert metrics["kl"] == pytest.approx(kl(expected), rel=1e-3)
    assert metrics["expected_gain"] == pytest.approx(math.sqrt(2 * delta) * 1.0, rel=1e-4)  # g . beta s = beta g.s


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_update_stays_in_the_trust_region_and_improves_the_surrogate(spec):
    torch.manual_seed(0)
    algo = TRPO(spec, TRPOConfig(max_kl=0.005), NetworkConfig(hidden_sizes=[16, 16]), torch.device("cpu"))
    n = 256
    obs = torch.randn(n, 1, spec.obs_shape[0])
    actions = algo.explore(obs.reshape(n, -1))[0].clone()  # out of inference mode, as the rollout buffer stores it
    # reward: a fixed linear score of (obs, action), so some actions are clearly better
    a = actions.float().reshape(n, -1)
    rewards = (obs.reshape(n, -1)[:, :1] * (a[:, :1] - 0.5 if spec is DISCRETE else a[:, :1])).reshape(n)
    rollout = Rollout(obs=obs, actions=actions.reshape(n, 1, *actions.shape[1:]), log_probs=torch.zeros(n, 1),
                      values=torch.zeros(n, 1), rewards=rewards.reshape(n, 1), terminated=torch.ones(n, 1),
                      done=torch.ones(n, 1), next_values=torch.zeros(n, 1))
    x = obs.reshape(1, n, -1)  # member 0's batch
    with torch.no_grad():
        old = algo.model.policy.distribution(x)
        critic_before = torch.nn.functional.mse_loss(algo.model.critic(x)[0], rewards).item()
    (metrics,) = algo.update(rollout, 0.0)
    with torch.no_grad():
        new = algo.model.policy.distribution(x)
        true_kl = kl_divergence(old, new).mean().item()
        critic_after = torch.nn.functional.mse_loss(algo.model.critic(x)[0], rewards).item()
    assert metrics["line_search_accepted"] == 1.0
    assert 0 < true_kl <= 0.005 and true_kl == pytest.approx(metrics["kl"], rel=1e-4)
    assert metrics["surrogate_gain"] > 0
    assert critic_after < critic_before  # the value function is fitted too
    if spec is CONTINUOUS:  # the state-independent log-std is a policy parameter of the natural step
        assert not torch.equal(algo.model.policy.log_std.detach(), torch.zeros(1, 1, 2))


def test_a_rejected_line_search_leaves_the_policy_unchanged():
    torch.manual_seed(0)
    # all advantages 0: g = 0, no direction improves the surrogate, the policy must stay where it is
    algo = TRPO(DISCRETE, TRPOConfig(normalize_advantage=False), LINEAR, torch.device("cpu"))
    before = [p.detach().clone() for p in algo.model.policy.parameters()]
    (metrics,) = algo.update(one_step_rollout([[1.0, 2.0], [0.5, -1.0]], [0, 1], [0.0, 0.0]), 0.0)
    assert metrics["line_search_accepted"] == 0.0
    assert all(torch.equal(b, p) for b, p in zip(before, algo.model.policy.parameters(), strict=True))


def test_state_dict_round_trip():
    algo = TRPO(DISCRETE, TRPOConfig(), NetworkConfig(hidden_sizes=[8]), torch.device("cpu"))
    algo.update(one_step_rollout([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]], [0, 1, 1], [1.0, 0.0, 2.0]), 0.0)
    state = algo.state_dict()
    other = TRPO(DISCRETE, TRPOConfig(), NetworkConfig(hidden_sizes=[8]), torch.device("cpu"))
    other.load_state_dict(state)
    for p, q in zip(algo.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert other.updates == 1


def test_tuned_cartpole_preset_is_rl_zoos():
    s = parse_settings(compose_config(["algo=trpo", "env=cartpole"]))
    hp = s.algo
    assert (hp.n_steps, hp.batch_size, hp.cg_damping, hp.gae_lambda, hp.n_critic_updates) == (512, 512, 1e-3, 0.98, 20)
    assert s.env.num_envs == 2


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_short_training_run_end_to_end(tmp_path, env):
    cfg = compose_config(["algo=trpo", f"env={env}", "total_steps=512", "algo.n_steps=128", "algo.batch_size=128", "eval.episodes=1",
                          "logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0"])
    summary = train(cfg, tmp_path)
    assert summary["env_steps"] >= 512
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_resume_from_a_mid_run_checkpoint_is_exact(tmp_path):
    """As PPO's reliability test: killed after the checkpoint at 1024, resumed to 2048 == one uninterrupted run."""
    import shutil

    from rlx.train.driver import resume

    args = ["algo=trpo", "env=cartpole", "total_steps=2048", "algo.n_steps=256", "checkpoint.every=1024",
            "eval.every=0", "eval.episodes=1", "logger.every=256", "logger.wandb.mode=disabled", "logger.progress=false"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(compose_config(args), full)
    shutil.copytree(full, cut)
    shutil.copy(cut / "checkpoints" / "step_1024.pt", cut / "checkpoints" / "last.pt")
    resume(cut, ["logger.progress=false"])
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
