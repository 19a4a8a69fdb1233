"""MultiDiscrete and MultiBinary actions (issue 26): the pure log-prob/entropy functions against
torch.distributions, the heads on the member dimension, PPO/A2C runs through the driver, populations, and
the one-line refusal of the algorithms that do not take them."""
from __future__ import annotations

import copy
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, kl_divergence

from rlx.algos.a2c import A2C, A2CConfig
from rlx.algos.ppo import PPO, PPOConfig
from rlx.algos.registry import ALGOS, OFF_POLICY, ON_POLICY
from rlx.app.validate import check_action_space_kind
from rlx.buffers.rollout import Rollout
from rlx.config.compose import compose_config
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.members import MemberRandom
from rlx.networks.heads import BernoulliPolicy, MultiCategoricalPolicy, make_policy
from rlx.networks.stacked import StackedMLP
from rlx.objectives.distributions import (
    bernoulli_entropy,
    bernoulli_log_prob,
    multi_categorical_entropy,
    multi_categorical_log_prob,
    multi_categorical_log_probs,
)
from rlx.train.driver import train
from tests.conftest import run_cli
from tests.unit.test_population import state_equals_members, update_equals_members

CPU = torch.device("cpu")
NET = NetworkConfig(hidden_sizes=[16, 16])
OBS = gym.spaces.Box(0.0, 1.0, (12,), np.float32)
MULTI_DISCRETE = EnvSpec("md", OBS, gym.spaces.MultiDiscrete([3, 4, 5]))
MULTI_BINARY = EnvSpec("mb", OBS, gym.spaces.MultiBinary(4))
QUIET = ["logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0", "torch_threads=1"]
ENVS = {"multi_discrete": "tests.unit.structured_envs:ChooseValues", "multi_binary": "tests.unit.structured_envs:MatchBits"}


def random_actions(space: gym.Space, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """``[*shape, D]`` actions of a MultiDiscrete (long) or MultiBinary (0./1. float) space."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return torch.stack([torch.randint(0, int(n), shape, generator=g) for n in space.nvec], -1)
    return torch.randint(0, 2, (*shape, int(space.n)), generator=g).float()


# ------------------------------------------------------------------ the pure functions vs torch.distributions

@pytest.mark.parametrize("nvec", [(3, 4, 5), (3, 3, 3), (2,), (7, 1, 2)])
def test_multi_categorical_log_prob_and_entropy_are_the_sums_of_torch_categoricals(nvec):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, sum(nvec), generator=g, dtype=torch.float64) * 3
    actions = random_actions(gym.spaces.MultiDiscrete(nvec), (6, 5), g)
    parts = logits.split(list(nvec), dim=-1)
    ref_log_prob = sum(Categorical(logits=p).log_prob(actions[..., j]) for j, p in enumerate(parts))
    ref_entropy = sum(Categorical(logits=p).entropy() for p in parts)
    log_probs = multi_categorical_log_probs(logits, nvec)
    assert log_probs.shape == (6, 5, len(nvec), max(nvec))
    torch.testing.assert_close(multi_categorical_log_prob(log_probs, actions), ref_log_prob)
    torch.testing.assert_close(multi_categorical_entropy(log_probs), ref_entropy)
    for j, n in enumerate(nvec):  # the padded choices of a narrower sub-action have probability exactly 0
        assert torch.all(log_probs[..., j, n:].exp() == 0)
        torch.testing.assert_close(log_probs[..., j, :n].exp().sum(-1), torch.ones(6, 5, dtype=torch.float64))


def test_multi_categorical_gradients_are_finite_and_equal_torchs():
    g = torch.Generator().manual_seed(1)
    nvec = (2, 5)
    logits = torch.randn(8, sum(nvec), generator=g, dtype=torch.float64, requires_grad=True)
    actions = random_actions(gym.spaces.MultiDiscrete(nvec), (8,), g)
    log_probs = multi_categorical_log_probs(logits, nvec)
    (multi_categorical_log_prob(log_probs, actions).sum() + multi_categorical_entropy(log_probs).sum()).backward()
    ours = logits.grad.clone()
    logits.grad = None
    parts = logits.split(list(nvec), dim=-1)
    ref = sum(Categorical(logits=p).log_prob(actions[..., j]) + Categorical(logits=p).entropy() for j, p in enumerate(parts))
    ref.sum().backward()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, logits.grad)


def test_bernoulli_log_prob_and_entropy_are_the_sums_of_torch_bernoullis():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 5, 4, generator=g, dtype=torch.float64) * 4
    logits[0, 0] = torch.tensor([60.0, -60.0, 0.0, 30.0], dtype=torch.float64)  # saturated: still finite and exact
    actions = torch.randint(0, 2, (6, 5, 4), generator=g).double()
    ref = Independent(Bernoulli(logits=logits), 1)
    torch.testing.assert_close(bernoulli_log_prob(logits, actions), ref.log_prob(actions))
    torch.testing.assert_close(bernoulli_entropy(logits), ref.entropy())
    assert torch.isfinite(bernoulli_log_prob(logits, actions)).all() and torch.isfinite(bernoulli_entropy(logits)).all()


# ----------------------------------------------------------------------------------------------- the heads

def test_make_policy_picks_the_head_of_each_space():
    assert isinstance(make_policy(12, MULTI_DISCRETE.action_space, [8], "tanh"), MultiCategoricalPolicy)
    assert isinstance(make_policy(12, MULTI_BINARY.action_space, [8], "tanh"), BernoulliPolicy)


@pytest.mark.parametrize("spec", [MULTI_DISCRETE, MULTI_BINARY], ids=["multi_discrete", "multi_binary"])
def test_heads_sample_from_each_members_stream_on_the_member_dimension(spec):
    """[K, B, obs] -> [K, B, D] actions (Gumbel-max per sub-action / u < p per bit); member k's draw is the
    one its own stream gives it alone (a K=1 head), whoever shares the population."""
    torch.manual_seed(0)
    k, b, seeds = 2, 64, (11, 22)
    alone = make_policy(12, spec.action_space, [16], "tanh")
    head = copy.deepcopy(alone)
    head.net = StackedMLP.from_mlps([alone.net] * k)  # the same weights: only the streams differ
    obs = torch.rand(k, b, 12)
    action, log_prob = head.sample(obs, MemberRandom(list(seeds), CPU))
    assert action.shape == (k, b, spec.action_space.shape[0]) and log_prob.shape == (k, b)
    assert not torch.equal(action[0], action[1])
    for member, seed in enumerate(seeds):
        mine, my_log_prob = alone.sample(obs[member : member + 1], MemberRandom([seed], CPU))
        assert torch.equal(action[member], mine[0])
        torch.testing.assert_close(log_prob[member], my_log_prob[0])
    logp, entropy = head.log_prob_entropy(obs, action)
    torch.testing.assert_close(logp, log_prob)
    torch.testing.assert_close(head.distribution(obs).log_prob(action), log_prob)  # TRPO's torch distribution
    torch.testing.assert_close(head.distribution(obs).entropy(), entropy)
    assert entropy.shape == (k, b)


def test_multi_categorical_samples_follow_the_policy_and_never_a_padded_choice():
    """Gumbel-max per sub-action draws each sub-action's softmax: frequencies over 40,000 draws within 0.01."""
    torch.manual_seed(0)
    head = make_policy(12, MULTI_DISCRETE.action_space, [], "tanh")
    assert isinstance(head, MultiCategoricalPolicy)
    with torch.no_grad():
        head.net[-1].weight.normal_(0, 1.0)
    obs = torch.rand(12).expand(1, 40_000, 12)
    for random in (MemberRandom([3], CPU), None):
        action, _ = head.sample(obs, random)
        probs = head.log_probs(obs[:, :1]).exp()[0, 0]
        for j, n in enumerate((3, 4, 5)):
            assert int(action[..., j].max()) < n
            freq = torch.bincount(action[0, :, j], minlength=n).double() / action.shape[1]
            torch.testing.assert_close(freq, probs[j, :n].double(), atol=0.01, rtol=0)


def test_deterministic_actions_are_the_argmax_per_sub_action_and_p_above_one_half():
    torch.manual_seed(0)
    md, mb = make_policy(12, MULTI_DISCRETE.action_space, [8], "tanh"), make_policy(12, MULTI_BINARY.action_space, [8], "tanh")
    assert isinstance(md, MultiCategoricalPolicy) and isinstance(mb, BernoulliPolicy)
    obs = torch.rand(32, 12)
    parts = md.net(obs).split([3, 4, 5], -1)
    assert torch.equal(md.mode(obs), torch.stack([p.argmax(-1) for p in parts], -1))
    assert torch.equal(mb.mode(obs), (torch.sigmoid(mb.logits(obs)) > 0.5).float())


def test_the_multi_categorical_distribution_gives_trpo_a_finite_kl_equal_to_the_sum_per_sub_action():
    torch.manual_seed(0)
    head = make_policy(12, MULTI_DISCRETE.action_space, [8], "tanh")
    obs = torch.rand(16, 12)
    old = head.distribution(obs)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    new_logits = head.net(obs)
    new = head.distribution(obs)
    old_parts = old.base_dist.logits  # [B, D, M] (normalized)
    ref = sum(kl_divergence(Categorical(logits=old_parts[:, j, :n]), Categorical(logits=p))
              for j, (n, p) in enumerate(zip((3, 4, 5), new_logits.split([3, 4, 5], -1), strict=True)))
    kl = kl_divergence(old, new)
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl, ref)


# --------------------------------------------------------------------------------- runs through the driver

def supported(kind: str) -> list[str]:
    return [n for n, cls in ON_POLICY.items() if kind in cls.action_spaces and n != "a3c"]


@pytest.mark.parametrize("kind", ["multi_discrete", "multi_binary"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_short_run_trains_evaluates_and_checkpoints(tmp_path, algo, kind):
    """A few hundred steps of the real training path (rollouts of [T, N, D] actions, update, evaluation with
    the deterministic policy, checkpoint) on a tiny MultiDiscrete / MultiBinary task."""
    hp = ["algo.n_steps=32", "algo.batch_size=32", "algo.n_epochs=2"] if algo == "ppo" else ["algo.n_steps=8"]
    cfg = compose_config([f"algo={algo}", f"env.id={ENVS[kind]}", "env.num_envs=2", "total_steps=384", "eval.episodes=2",
                          *hp, *QUIET])
    summary = train(cfg, tmp_path)
    assert summary["status"] == "ok" and summary["env_steps"] == 384
    assert 0.0 <= summary["eval_return_mean"] <= 8.0  # 8 steps, rewards in [0, 1]
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_ppo_and_a2c_list_the_structured_spaces_and_off_policy_algorithms_do_not():
    for kind in ("multi_discrete", "multi_binary"):
        assert {"ppo", "a2c"} <= set(supported(kind))
        assert not [n for n, cls in OFF_POLICY.items() if kind in cls.action_spaces]


# ----------------------------------------------------------------------------------------------- populations

def _rollout(k: int, n: int, t: int, space: gym.Space, seed: int) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    m = k * n
    done = (torch.rand(t, m, generator=g) < 0.15).float()
    return Rollout(obs=torch.rand(t, m, 12, generator=g), actions=random_actions(space, (t, m), g),
                   log_probs=-torch.rand(t, m, generator=g) - 2.0, values=torch.randn(t, m, generator=g),
                   rewards=torch.rand(t, m, generator=g), terminated=done * (torch.rand(t, m, generator=g) < 0.6).float(),
                   done=done, next_values=torch.randn(t, m, generator=g))


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_population_of_two_on_multi_discrete_equals_each_members_own_run(algo):
    """2 members (different lr, entropy bonus, clip) acting and updating as one population == each member's
    own plain run (K=1, its seed): the same actions from its own stream, then weights, optimizer state and
    metrics after 2 updates of shuffled minibatches (1e-5)."""
    k, n, t = 2, 3, 16
    if algo == "ppo":
        cls = PPO
        hps = [PPOConfig(n_steps=t, batch_size=16, n_epochs=2, lr=1e-3, ent_coef=0.0, clip_eps=0.2),
               PPOConfig(n_steps=t, batch_size=16, n_epochs=2, lr=3e-3, ent_coef=0.05, clip_eps=0.1)]
    else:
        cls = A2C
        hps = [A2CConfig(n_steps=t, lr=7e-4), A2CConfig(n_steps=t, lr=3e-3, ent_coef=0.05)]
    pop = cls(MULTI_DISCRETE, hps, NET, CPU, seeds=[5, 9])
    singles = [cls(MULTI_DISCRETE, h, NET, CPU, seeds=[s]) for h, s in zip(hps, (5, 9), strict=True)]
    obs = torch.rand(k * n, 12)
    actions, log_probs, values = pop.explore(obs)
    assert actions.shape == (k * n, 3) and actions.dtype == torch.long
    for i, single in enumerate(singles):
        a, lp, v = single.explore(obs[i * n : (i + 1) * n])
        assert torch.equal(a, actions[i * n : (i + 1) * n])
        torch.testing.assert_close(lp, log_probs[i * n : (i + 1) * n])
        torch.testing.assert_close(v, values[i * n : (i + 1) * n])
    for step in range(2):
        r = _rollout(k, n, t, MULTI_DISCRETE.action_space, seed=step)
        update_equals_members(pop, singles, r, n, progress=0.25 * step)
    state_equals_members(pop, singles)


# ------------------------------------------------------------------------------------------------ refusals

def test_off_policy_algorithms_refuse_structured_actions_naming_what_is_supported():
    for name in OFF_POLICY:
        for spec, label in ((MULTI_DISCRETE, "MultiDiscrete(nvec)"), (MULTI_BINARY, "MultiBinary(n)")):
            with pytest.raises(UserError) as e:
                check_action_space_kind(name, "x:Env", spec)
            message = str(e.value)
            assert "\n" not in message
            assert message.startswith(f"algo={name} does not support {label} actions (env.id=x:Env: action space ")
            takes = " or ".join({"discrete": "Discrete(n)", "continuous": "a flat float Box"}[k] for k in ALGOS[name].action_spaces)
            assert f"algo={name} takes {takes}; algorithms that take {label}: " in message
            assert re.search(r"\bppo\b", message.split("algorithms that take")[1]) and "a2c" in message
    for name in ("ppo", "a2c"):
        check_action_space_kind(name, "x:Env", MULTI_DISCRETE)
        check_action_space_kind(name, "x:Env", MULTI_BINARY)


@pytest.mark.parametrize("space, fragment", [
    (gym.spaces.MultiDiscrete([[2, 2], [3, 3]]), "MultiDiscrete actions must be flat (nvec of shape (n,)), not (2, 2)"),
    (gym.spaces.MultiDiscrete([2, 3], start=[1, 0]), "starts at [1, 0]: rlx's policies act in 0..nvec[j]-1"),
    (gym.spaces.MultiBinary([2, 2]), "MultiBinary actions must be flat (MultiBinary(n)), not of shape (2, 2)"),
])
def test_structured_spaces_rlx_cannot_act_in_are_refused(space, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        check_action_space_kind("ppo", "x:Env", EnvSpec("x", OBS, space))


def test_the_cli_refuses_an_off_policy_algorithm_on_multi_discrete_in_one_line_before_the_run_dir(tmp_path):
    r = run_cli("train", "algo=sac", f"env.id={ENVS['multi_discrete']}", "total_steps=64", "logger.progress=false",
                cwd=tmp_path, env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("rlx: error: algo=sac does not support MultiDiscrete(nvec) actions "
                           "(env.id=tests.unit.structured_envs:ChooseValues: action space MultiDiscrete([3 4 5])); "
                           "algo=sac takes a flat float Box; algorithms that take MultiDiscrete(nvec): ppo, "), line
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no run dir
