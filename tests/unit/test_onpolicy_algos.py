"""REINFORCE, batch/online actor-critic, A2C and A3C updates against hand computations.

The nets are linear (``hidden_sizes=[]``) with known weights and the optimizer is plain SGD without
clipping, so one update's parameter change is the hand-computed gradient times the learning rate.
Policy weights start at zero: pi(.|s) = (0.5, 0.5), grad_logits log pi(a|s) = onehot(a) - pi.
"""
from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from rlx.algos.a2c import A2C
from rlx.algos.a3c import A3C, share_optimizer_state_
from rlx.algos.ac_batch import BatchAC
from rlx.algos.ac_online import OnlineAC
from rlx.algos.common import CompleteEpisodes, make_optimizer
from rlx.algos.reinforce import Reinforce
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.envs.make import EnvSpec, env_spec
from rlx.networks.stacked import StackedMLP
from rlx.objectives.returns import episode_returns

SPEC = EnvSpec("Toy-v0", gym.spaces.Box(-10, 10, (2,)), gym.spaces.Discrete(2))
LINEAR = NetworkConfig(hidden_sizes=[], activation="tanh")
NO_CLIP = 1e9


def T(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def linear_algo(cls, critic_w=(0.0, 0.0), critic_b=0.0, **hp):
    algo = cls(SPEC, cls.Config(optimizer="sgd", max_grad_norm=NO_CLIP, **hp), LINEAR, torch.device("cpu"))
    with torch.no_grad():
        policy, critic = algo.model.policy.net, getattr(algo.model.critic, "net", None)
        if isinstance(policy, StackedMLP):  # a population algorithm: member 0 of [1, in, out] stacks
            policy.weights[0].zero_()
            policy.biases[0].zero_()
            if critic is not None:  # REINFORCE without a baseline has no critic
                critic.weights[0].copy_(T(list(critic_w)).reshape(1, -1, 1))
                critic.biases[0].fill_(critic_b)
            return algo
        policy[0].weight.zero_()
        policy[0].bias.zero_()
        if critic is not None:
            critic[0].weight.copy_(T(list(critic_w)))
            critic[0].bias.fill_(critic_b)
    return algo


def params(algo) -> dict[str, torch.Tensor]:
    """The model's parameters by their plain names (``policy.net.0.weight``), stacked ones as member 0's."""
    out: dict[str, torch.Tensor] = {}
    stacked: set[int] = set()
    for path, module in algo.model.named_modules():
        if isinstance(module, StackedMLP):
            out.update({f"{path}.{k}": v for k, v in module.member_state_dict(0).items()})
            stacked.update(id(p) for p in module.parameters())
    out.update({k: v.detach().clone() for k, v in algo.model.named_parameters() if id(v) not in stacked})
    return out


def deltas(algo, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v - before[k] for k, v in params(algo).items()}


def rollout(obs, actions, rewards, terminated, done, values=None, next_values=None) -> Rollout:
    """A [T, 1] rollout of one env from per-step lists."""
    n = len(rewards)
    def col(x):
        return T(*x).reshape(n, 1)

    return Rollout(obs=T(*obs).reshape(n, 1, -1), actions=torch.tensor(actions).reshape(n, 1),
                   log_probs=torch.zeros(n, 1), values=col(values or [0.0] * n), rewards=col(rewards),
                   terminated=col(terminated), done=col(done), next_values=col(next_values or [0.0] * n))


# --- REINFORCE -----------------------------------------------------------------------------------
# A 3-step episode, gamma 0.5: rewards 1, 2, 3 -> reward-to-go G = (2.75, 3.5, 3.0).
EPISODE = dict(obs=[[1, 0], [0, 1], [1, 1]], actions=[0, 1, 0], rewards=[1, 2, 3], terminated=[0, 0, 1], done=[0, 0, 1])


def test_reinforce_step_without_baseline_hand_computed():
    algo = linear_algo(Reinforce, baseline=False, gamma=0.5, lr=0.1)
    before = params(algo)
    algo.update(rollout(**EPISODE), 0.0)
    d = deltas(algo, before)
    # dL/dW[0] = -1/3 sum_t G_t (onehot(a_t) - pi)[0] s_t = -1/6 (G0 + G2, G2 - G1) = -1/6 (5.75, -0.5)
    torch.testing.assert_close(d["policy.net.0.weight"], 0.1 * T([5.75 / 6, -0.5 / 6], [-5.75 / 6, 0.5 / 6]))
    torch.testing.assert_close(d["policy.net.0.bias"], 0.1 * T(2.25 / 6, -2.25 / 6))
    assert not any(k.startswith("critic") for k in d)  # no baseline: no critic network at all


def test_reinforce_step_with_baseline_hand_computed():
    # V(s) = s[0]: baseline (1, 0, 1) -> weights A = G - V = (1.75, 3.5, 2.0)
    algo = linear_algo(Reinforce, critic_w=(1.0, 0.0), baseline=True, gamma=0.5, lr=0.1, critic_lr=0.2)
    before = params(algo)
    (metrics,) = algo.update(rollout(**EPISODE), 0.0)  # a population of one: one member's metrics
    d = deltas(algo, before)
    # policy: -1/6 (A0 + A2, A2 - A1) = -1/6 (3.75, -1.5); bias -1/6 (A0 - A1 + A2) = -0.25/6
    torch.testing.assert_close(d["policy.net.0.weight"], 0.1 * T([3.75 / 6, -1.5 / 6], [-3.75 / 6, 1.5 / 6]))
    torch.testing.assert_close(d["policy.net.0.bias"], 0.1 * T(0.25 / 6, -0.25 / 6))
    # critic on 1/2 mean (V - G)^2: dw = 1/3 sum (V - G) s = (-1.25, -5.5/3), dc = -7.25/3
    torch.testing.assert_close(d["critic.net.0.weight"], -0.2 * T([-1.25, -5.5 / 3]))
    torch.testing.assert_close(d["critic.net.0.bias"], -0.2 * T(-7.25 / 3))
    assert metrics["batch_steps"] == 3


def test_reinforce_holds_unfinished_episode_until_it_ends():
    algo = linear_algo(Reinforce, baseline=False, gamma=0.5, lr=0.1)
    first = {k: v[:2] for k, v in EPISODE.items()}  # the rollout ends before the episode does
    assert algo.update(rollout(**first), 0.0) == [{}]
    before = params(algo)
    algo.update(rollout(**{k: v[2:] for k, v in EPISODE.items()}), 0.0)
    reference = linear_algo(Reinforce, baseline=False, gamma=0.5, lr=0.1)
    reference.update(rollout(**EPISODE), 0.0)
    for k, v in deltas(algo, before).items():  # same step as seeing the whole episode at once
        torch.testing.assert_close(v, params(reference)[k] - before[k])


def test_episode_returns_fold_truncation_bootstrap():
    # episode A: r=(1, 1), terminated; episode B: r=(2,), truncated with V(final obs)=10; gamma 0.5
    r, nv = T(1, 1, 2), T(99, 99, 10)
    term, done = T(0, 1, 0), T(0, 1, 1)
    torch.testing.assert_close(episode_returns(r, nv, term, done, 0.5), T(1.5, 1.0, 2 + 0.5 * 10))
    torch.testing.assert_close(episode_returns(r, torch.zeros(3), term, done, 0.5), T(1.5, 1.0, 2.0))


def test_complete_episodes_batches_whole_episodes_in_time_order():
    # env 0: episode ends at t=1, the next one runs past the rollout; env 1: no episode ends.
    ce = CompleteEpisodes()  # one member with both envs
    r1 = Rollout(obs=torch.arange(6.0).reshape(3, 2, 1), actions=torch.zeros(3, 2, dtype=torch.long),
                 log_probs=torch.zeros(3, 2), values=torch.zeros(3, 2), rewards=torch.arange(6.0).reshape(3, 2),
                 terminated=T([0, 0], [1, 0], [0, 0]), done=T([0, 0], [1, 0], [0, 0]), next_values=torch.zeros(3, 2))
    b = ce(r1)
    torch.testing.assert_close(b.rewards, T([0, 2]))  # env 0, t = 0, 1
    r2 = Rollout(**{**r1.__dict__, "rewards": torch.arange(10.0, 16.0).reshape(3, 2),
                    "terminated": T([1, 0], [0, 0], [0, 1]), "done": T([1, 0], [0, 0], [0, 1])})
    b = ce(r2)
    # env 0: held t=2 (reward 4) + new t=0 (10); env 1: held 1, 3, 5 + new 11, 13, 15
    torch.testing.assert_close(b.rewards, T([4, 10, 1, 3, 5, 11, 13, 15]))
    torch.testing.assert_close(b.done, T([0, 1, 0, 0, 0, 0, 0, 1]))
    assert ce.state_dict()["length"].tolist() == [[2, 0]]  # env 0's new episode is held
    torch.testing.assert_close(ce.state_dict()["rewards"][0, 0], T(12, 14))


def test_complete_episodes_of_two_members_are_each_members_own_padded_batch():
    """Members' batches have their own lengths: member 0's episodes end, member 1's do not (yet); each
    member's rows equal what a one-member CompleteEpisodes of its own envs gives, the rest is padding."""
    g = torch.Generator().manual_seed(0)
    t, n = 5, 2
    pop, alone = CompleteEpisodes(2), [CompleteEpisodes(1), CompleteEpisodes(1)]
    for step in range(3):
        done = (torch.rand(t, 2 * n, generator=g) < 0.3).float()
        done[:, n:] *= float(step == 2)  # member 1: no episode end before the third rollout
        r = Rollout(obs=torch.randn(t, 2 * n, 3, generator=g), actions=torch.randint(0, 2, (t, 2 * n), generator=g),
                    log_probs=torch.zeros(t, 2 * n), values=torch.zeros(t, 2 * n), rewards=torch.randn(t, 2 * n, generator=g),
                    terminated=done, done=done, next_values=torch.randn(t, 2 * n, generator=g))
        b = pop(r)
        for k in range(2):
            own = alone[k](Rollout(**{f: v[:, k * n : (k + 1) * n] for f, v in r.__dict__.items()}))
            count = 0 if own is None else int(own.count[0])
            assert b is None and count == 0 or int(b.count[k]) == count
            if count:
                assert b.mask[k].sum() == count and not b.mask[k, count:].any()
                for f in CompleteEpisodes.FIELDS:
                    torch.testing.assert_close(getattr(b, f)[k, :count], getattr(own, f)[0], rtol=0, atol=0)
    assert pop.state_dict()["length"].shape == (2, n)


# --- batch actor-critic -------------------------------------------------------------------------


def test_batch_ac_fits_critic_then_one_policy_step_hand_computed():
    # s0=(1,0), s1=(0,1), a=(0,1), r=(1,1), terminal at t=1, gamma 0.5 -> G = (1.5, 1.0)
    algo = linear_algo(BatchAC, gamma=0.5, lr=0.1, critic_lr=0.4, critic_steps=1)
    ep = rollout(obs=[[1, 0], [0, 1]], actions=[0, 1], rewards=[1, 1], terminated=[0, 1], done=[0, 1])
    before = params(algo)
    algo.update(ep, 0.0)
    d = deltas(algo, before)
    # 1. critic from V = 0: dw = 1/2 sum (V - G) s = (-0.75, -0.5), dc = -1.25 -> w = (0.3, 0.2), c = 0.5
    torch.testing.assert_close(d["critic.net.0.weight"], T([0.3, 0.2]))
    torch.testing.assert_close(d["critic.net.0.bias"], T(0.5))
    # 2. fitted V = (0.8, 0.7): A0 = 1 + 0.5*0.7 - 0.8 = 0.55, A1 = 1 - 0.7 = 0.3 (terminal)
    # 3. dL/dW[0] = -1/2 (A0 * 0.5 * s0 - A1 * 0.5 * s1) = -(0.1375, -0.075)
    torch.testing.assert_close(d["policy.net.0.weight"], 0.1 * T([0.1375, -0.075], [-0.1375, 0.075]))
    torch.testing.assert_close(d["policy.net.0.bias"], 0.1 * T(0.0625, -0.0625))


# --- online actor-critic ------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [False, True])
def test_online_ac_one_transition_hand_computed(terminal):
    # V(s) = 0.5 s0 - 0.5 s1 + 0.1: V(s=(1,2)) = -0.4, V(s'=(0,1)) = -0.4
    algo = linear_algo(OnlineAC, critic_w=(0.5, -0.5), critic_b=0.1, gamma=0.9, lr=0.1, critic_lr=0.2)
    s, s_next = T([1, 2]), T([0, 1])
    v, v_next = algo.value(s).item(), algo.value(s_next).item()
    assert (v, v_next) == pytest.approx((-0.4, -0.4))
    delta = 1.0 - -0.4 if terminal else 1.0 + 0.9 * -0.4 - -0.4  # r (+ gamma V(s')) - V(s): 1.4 | 1.04
    step = rollout(obs=[[1, 2]], actions=[1], rewards=[1.0], terminated=[float(terminal)], done=[float(terminal)],
                   values=[v], next_values=[v_next])
    before = params(algo)
    algo.update(step, 0.0)
    d = deltas(algo, before)
    # actor: theta += lr * delta * (onehot(1) - pi) s^T; critic: w += critic_lr * delta * s
    torch.testing.assert_close(d["policy.net.0.weight"], 0.1 * delta * T([-0.5, -1.0], [0.5, 1.0]))
    torch.testing.assert_close(d["policy.net.0.bias"], 0.1 * delta * T(-0.5, 0.5))
    torch.testing.assert_close(d["critic.net.0.weight"], 0.2 * delta * T([1.0, 2.0]))
    torch.testing.assert_close(d["critic.net.0.bias"], 0.2 * delta * T(1.0))


# --- A2C -----------------------------------------------------------------------------------------


def test_a2c_n_step_update_hand_computed():
    # V = 1 everywhere, 2 steps, no episode end, gamma 0.5 -> targets G1 = 1 + 0.5*1 = 1.5, G0 = 1.75
    algo = linear_algo(A2C, critic_b=1.0, gamma=0.5, gae_lambda=1.0, lr=0.1, vf_coef=0.5)
    r = rollout(obs=[[1, 0], [0, 1]], actions=[0, 1], rewards=[1, 1], terminated=[0, 0], done=[0, 0],
                values=[1.0, 1.0], next_values=[1.0, 1.0])
    before = params(algo)
    (metrics,) = algo.update(r, 0.0)  # a population of one: one member's metrics
    d = deltas(algo, before)
    # critic: vf_coef * 1/2 sum (V - G) s = 0.25 (-0.75, -0.5); bias 0.25 (-1.25)
    torch.testing.assert_close(d["critic.net.0.weight"], -0.1 * T([-0.1875, -0.125]))
    torch.testing.assert_close(d["critic.net.0.bias"], -0.1 * T(-0.3125))
    # actor with A = G - V = (0.75, 0.5): dL/dW[0] = -1/2 (0.375, -0.25)
    torch.testing.assert_close(d["policy.net.0.weight"], 0.1 * T([0.1875, -0.125], [-0.1875, 0.125]))
    assert {"policy_loss", "value_loss", "entropy", "grad_norm", "explained_variance", "lr"} <= metrics.keys()


def test_anneal_lr_decays_linearly_and_is_checkpointed():
    algo = linear_algo(A2C, lr=0.1, anneal_lr=True)
    r = rollout(obs=[[1, 0]], actions=[0], rewards=[1], terminated=[0], done=[0])
    assert algo.update(r, 0.25)[0]["lr"] == pytest.approx(0.075)
    assert algo.state_dict()["optimizer"]["hyper"]["lr"].item() == pytest.approx(0.075)
    assert algo.update(r, 0.5)[0]["lr"] == pytest.approx(0.05)  # from the configured lr, not the last one


# --- A3C ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_shared_optimizer_state_is_in_shared_memory_and_steps_like_a_fresh_one(name):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    shared = make_optimizer(a.parameters(), 0.01, name)
    share_optimizer_state_(shared)
    fresh = make_optimizer(b.parameters(), 0.01, name)
    states = list(shared.state.values())
    assert states and all(v.is_shared() for s in states for v in s.values() if isinstance(v, torch.Tensor))
    for _ in range(2):
        x = torch.randn(4, 3)
        for net, opt in ((a, shared), (b, fresh)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_a3c_worker_applies_its_gradient_to_the_shared_model():
    spec = env_spec("CartPole-v1")
    algo = A3C(spec, A3C.Config(num_workers=2), NetworkConfig(), torch.device("cpu"))
    assert all(p.is_shared() for p in algo.model.parameters())
    worker = algo.worker(1)
    before = [p.detach().clone() for p in algo.model.parameters()]
    obs = torch.randn(5, 1, 4)
    actions, log_probs, values = (x.clone() for x in worker.explore(obs.reshape(5, 4)))  # as the buffer copies them
    r = Rollout(obs=obs, actions=actions.reshape(5, 1), log_probs=log_probs.reshape(5, 1), values=values.reshape(5, 1),
                rewards=torch.ones(5, 1), terminated=torch.zeros(5, 1), done=torch.zeros(5, 1), next_values=torch.zeros(5, 1))
    r.next_values[:-1] = r.values[1:]
    worker.update(r, 0.0)
    assert any(not torch.equal(p, q) for p, q in zip(algo.model.parameters(), before, strict=True))
    for p, q in zip(worker.model.parameters(), algo.model.parameters(), strict=True):  # local copy pulled the new weights
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    assert algo.worker_updates.tolist() == [0, 1] and algo.updates == 1
    restored = A3C(spec, A3C.Config(num_workers=2), NetworkConfig(), torch.device("cpu"))
    restored.load_state_dict(algo.state_dict())
    assert restored.worker_updates.tolist() == [0, 1]
    assert all(v.is_shared() for s in restored.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reinforce", "ac_batch", "ac_online", "a2c", "a3c"])
def test_algo_yaml_lists_every_field_with_its_default(name):
    import dataclasses
    from importlib import resources

    import yaml

    from rlx.algos.registry import ALGOS

    node = yaml.safe_load((resources.files("rlx.conf") / "algo" / f"{name}.yaml").read_text())
    assert node.pop("name") == name
    defaults = {f.name: f.default for f in dataclasses.fields(ALGOS[name].Config)}
    assert node == pytest.approx(defaults)


# --- through the real run path: continuous actions, checkpoints, `rlx eval`, exact resume -------


@pytest.mark.parametrize("name", ["reinforce", "ac_batch", "ac_online", "a2c", "a3c"])
def test_continuous_actions_train_checkpoint_and_eval(name, tmp_path):
    from rlx.train.run import evaluate_checkpoint
    from tests.learning.helpers import train_summary

    steps = 600 if name == "ac_online" else 1000  # Pendulum: 200-step episodes, Gaussian policy
    s = train_summary([f"algo={name}", "env=pendulum", f"total_steps={steps}", "eval.every=0", "eval.episodes=2",
                       *(["algo.n_steps=100"] if name in ("reinforce", "ac_batch") else [])], tmp_path)
    assert s["status"] == "ok" and s["env_steps"] >= steps and s["updates"] > 0 and s["eval_return_mean"] < 0
    out = evaluate_checkpoint(tmp_path / "checkpoints" / "last.pt", episodes=2)
    assert out["algo"] == name and out["episodes"] == 2


def test_reinforce_resume_is_exact_with_held_back_episodes(tmp_path):
    """Cut at the checkpoint, resume: the same run as without the cut (held-back episode steps included)."""
    import shutil

    from rlx.config.compose import compose_config
    from rlx.train.driver import resume, train

    args = ["algo=reinforce", "algo.n_steps=32", "total_steps=2048", "checkpoint.every=1024", "eval.every=0",
            "eval.episodes=2", "logger.wandb.mode=disabled", "logger.progress=false"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(compose_config(args), full)
    state = torch.load(full / "checkpoints" / "step_1024.pt", weights_only=False)
    assert state["algo"]["episodes"]["length"].sum() > 0  # unfinished episodes were held back
    shutil.copytree(full, cut)
    shutil.copy(cut / "checkpoints" / "step_1024.pt", cut / "checkpoints" / "last.pt")
    resume(cut, ["logger.progress=false"])
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)["algo"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
