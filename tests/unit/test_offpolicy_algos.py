"""Off-policy algorithms: one update on a tiny batch with fixed tiny networks, checked against targets
computed by hand; temperature direction, TD3's delay, persistence, config validation, the loop."""
from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlx.algos.ddpg import DDPG
from rlx.algos.offpolicy_ac import OffPolicyAC
from rlx.algos.sac import SAC
from rlx.algos.sac_discrete import SACDiscrete
from rlx.algos.sac_v import SACV
from rlx.algos.td3 import TD3
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.config.typed import build
from rlx.envs.make import EnvSpec
from rlx.errors import UserError
from rlx.networks.ensemble import EnsembleMLP
from rlx.networks.stacked import MemberMLP

CPU = torch.device("cpu")
NET = NetworkConfig([8], "relu")
BOX = EnvSpec("Box-v0", gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32))
DISCRETE = EnvSpec("Disc-v0", gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(2))
GAMMA = 0.9


def make(cls, spec=BOX, **hp):
    return cls(spec, build(cls.Config, {"gamma": GAMMA, **hp}, "algo"), NET, CPU)


def batch(actions: torch.Tensor | None = None) -> Transitions:
    """Two transitions: r = [1, 2], the second one terminal."""
    obs = torch.tensor([[0.1, -0.2], [0.3, 0.4]])
    return Transitions(obs=obs, actions=torch.tensor([[1.0], [-2.0]]) if actions is None else actions,
                       rewards=torch.tensor([1.0, 2.0]), next_obs=-obs, terminated=torch.tensor([0.0, 1.0]))


@torch.no_grad()
def constant(module: nn.Module, *values) -> None:
    """Make a network output constants: all weights 0, last bias = values (one per ensemble member)."""
    for p in module.parameters():
        p.zero_()
    last_bias = list(module.parameters())[-1]
    if hasattr(module, "net") and isinstance(module.net, MemberMLP):  # a population of one's [1, E, 1, out]
        last_bias = last_bias[0]
    if isinstance(module, EnsembleMLP) or hasattr(module, "net") and isinstance(module.net, (EnsembleMLP, MemberMLP)):
        for e, v in enumerate(values):
            last_bias[e] = torch.as_tensor(v, dtype=torch.float32)
    else:
        last_bias[:] = torch.as_tensor(values[0], dtype=torch.float32)


def fixed_policy(algo, log_prob: float = -1.0) -> None:
    """Replace the tanh-Gaussian sampler: a = 0, log π(a|s) = ``log_prob`` (differentiable leaves)."""
    algo.actor.sample = lambda obs, random=None, noise=None: (torch.zeros(*obs.shape[:-1], 1, requires_grad=True),
                                                  torch.full(obs.shape[:-1], log_prob, requires_grad=True))


def half_mse(q: list[float], y: list[float]) -> float:
    return 0.5 * sum((a - b) ** 2 for a, b in zip(q, y, strict=True)) / len(y)


# ------------------------------------------------------------------------------------ critic targets


def test_ddpg_critic_target_by_hand() -> None:
    algo = make(DDPG)
    constant(algo.critic_target, 5.0)  # Q'(s', μ'(s')) = 5
    constant(algo.critic, 1.0)  # Q(s, a) = 1
    # y = r + γ(1−d)Q' = [1 + 0.9·5, 2] = [5.5, 2]
    (out,) = algo.update(batch(), 0.0)  # a plain run: a population of one
    assert out["critic_loss"] == pytest.approx(half_mse([1, 1], [5.5, 2]))
    assert out["q_mean"] == pytest.approx(1.0)


def test_td3_clipped_double_q_target_and_policy_delay() -> None:
    algo = make(TD3)
    constant(algo.critic_target, 5.0, 3.0)  # min(Q'_1, Q'_2) = 3 whatever the smoothed action
    constant(algo.critic, 1.0, 0.0)
    (out,) = algo.update(batch(), 0.0)
    y = [1 + GAMMA * 3, 2]
    assert out["critic_loss"] == pytest.approx(half_mse([1, 1], y) + half_mse([0, 0], y))
    # update 1 of policy_delay=2 trains the critics only; update 2 also the actor
    assert algo.critic_opt.step_count.tolist() == [1] and algo.actor_opt.step_count.tolist() == [0]
    algo.update(batch(), 0.0)
    assert algo.actor_opt.step_count.tolist() == [1]


def test_sac_soft_bellman_target_by_hand() -> None:
    algo = make(SAC, alpha=0.5)
    fixed_policy(algo, log_prob=-1.0)
    constant(algo.critic_target, 2.0, 3.0)
    constant(algo.critic, 1.0, 0.0)
    (out,) = algo.update(batch(), 0.0)  # a plain run: a population of one
    # y = r + γ(1−d)(min Q' − α log π) = [1 + 0.9·(2 + 0.5), 2] = [3.25, 2]
    y = [3.25, 2]
    assert out["critic_loss"] == pytest.approx(half_mse([1, 1], y) + half_mse([0, 0], y))
    assert out["alpha"] == pytest.approx(0.5) and out["alpha_loss"] == 0.0
    # actor loss α log π − min Q(s, a^π) uses the critics AFTER their step: just check its sign of use
    assert out["entropy"] == pytest.approx(1.0)


def test_sac_temperature_rises_when_entropy_is_below_target() -> None:
    algo = make(SAC, alpha="auto")  # α = 1 at start, target entropy −dim(A) = −1
    fixed_policy(algo, log_prob=5.0)  # entropy estimate −5 < −1
    (out,) = algo.update(batch(), 0.0)
    assert out["alpha"] == pytest.approx(1.0)  # this step used α before its own update
    assert algo.temperature.value().item() > 1.0
    fixed_policy(algo, log_prob=-5.0)  # entropy 5 > −1: α goes back down (past Adam's momentum)
    for _ in range(10):
        algo.update(batch(), 0.0)
    assert algo.temperature.value().item() < 1.0


def test_sac_v_value_and_q_targets_by_hand() -> None:
    algo = make(SACV, alpha=0.5)
    fixed_policy(algo, log_prob=-1.0)
    constant(algo.value_target, 4.0)  # V_ψ̄(s') = 4
    constant(algo.value, 0.0)  # V_ψ(s) = 0
    constant(algo.critic, 1.0, 0.0)
    (out,) = algo.update(batch(), 0.0)  # a plain run: a population of one
    # Q target r + γ(1−d)V_ψ̄(s') = [1 + 3.6, 2]
    y = [4.6, 2]
    assert out["critic_loss"] == pytest.approx(half_mse([1, 1], y) + half_mse([0, 0], y))
    # V target min_i Q_i(s, a^π) − α log π = min(1, 0) + 0.5 = 0.5, prediction 0
    assert out["value_loss"] == pytest.approx(half_mse([0, 0], [0.5, 0.5]))
    # the target value net moved toward the online one by τ (only its last bias differs: 4 vs ~0)
    assert algo.value_target.net.biases[-1].item() == pytest.approx(4.0 * (1 - 0.005), abs=1e-3)


def test_sac_discrete_exact_expectation_target_by_hand() -> None:
    algo = make(SACDiscrete, spec=DISCRETE, alpha=0.5)
    constant(algo.actor, [0.0, 0.0])  # uniform policy: π = [½, ½]
    constant(algo.critic_target, [2.0, 5.0], [3.0, 1.0])  # min over critics per action: [2, 1]
    constant(algo.critic, [1.0, 0.0], [0.0, 0.0])
    (out,) = algo.update(batch(actions=torch.tensor([0, 1])), 0.0)  # a plain run: a population of one
    # V(s') = Σ_a π(a)(min Q'(a) − α log π(a)) = ½(2 + 1) + 0.5·log 2
    v = 1.5 + 0.5 * math.log(2)
    y = [1 + GAMMA * v, 2]
    q1, q2 = [1.0, 0.0], [0.0, 0.0]  # Q_i(s, a) at the buffer actions [0, 1]
    assert out["critic_loss"] == pytest.approx(half_mse(q1, y) + half_mse(q2, y), rel=1e-5)
    assert out["entropy"] == pytest.approx(math.log(2))


def test_offpolicy_ac_target_and_zero_weight_for_constant_q() -> None:
    algo = make(OffPolicyAC, ent_coef=0.0)
    constant(algo.critic_target, 5.0)
    constant(algo.critic, 1.0)
    actor_before = [p.clone() for p in algo.actor.parameters()]
    (out,) = algo.update(batch(), 0.0)  # a plain run: a population of one
    assert out["critic_loss"] == pytest.approx(half_mse([1, 1], [5.5, 2]))
    # Q̂ does not depend on a (still after the critic step: its bias moved, its weights are 0 and got
    # no gradient), so every leave-one-out weight Q̂(s, a_k) − b_k is 0 and the policy does not move.
    assert out["actor_loss"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(actor_before, algo.actor.parameters(), strict=True))


# ------------------------------------------------------------------------------------ acting, persistence


@pytest.mark.parametrize("cls", [SAC, SACV, OffPolicyAC, DDPG, TD3])
def test_continuous_actions_are_in_the_env_box(cls) -> None:
    algo = make(cls)
    obs = torch.randn(64, 2)
    for a in (algo.explore(obs), algo.act(obs, True), algo.act(obs, False)):
        assert a.shape == (64, 1) and (a.abs() <= 2.0).all()


def test_ddpg_ou_noise_resets_only_finished_envs() -> None:
    algo = make(DDPG, noise="ou", noise_std=0.3)
    obs = torch.zeros(2, 2)
    for _ in range(5):
        algo.explore(obs)
    x_before = [p.x.copy() for p in algo.noise.processes]
    algo.episodes_ended(np.array([True, False]))
    np.testing.assert_array_equal(algo.noise.processes[0].x, 0.0)
    np.testing.assert_array_equal(algo.noise.processes[1].x, x_before[1])


@pytest.mark.parametrize("cls,spec", [(SAC, BOX), (SACV, BOX), (OffPolicyAC, BOX), (DDPG, BOX), (TD3, BOX),
                                      (SACDiscrete, DISCRETE)])
def test_state_dict_round_trip_continues_identically(cls, spec) -> None:
    acts = torch.tensor([[0.5], [-1.0]]) if spec is BOX else torch.tensor([1, 0])
    torch.manual_seed(0)
    a = make(cls, spec)
    for _ in range(3):
        a.update(batch(acts), 0.0)
    a.explore(torch.zeros(2, 2))  # creates DDPG/TD3 noise state
    torch.manual_seed(1)
    b = make(cls, spec)
    buf = io.BytesIO()  # through serialization, as a checkpoint (no tensors shared between a and b)
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=False))
    for algo in (a, b):  # same RNG stream for both continuations
        torch.manual_seed(2)
        algo.out = [algo.update(batch(acts), 0.0) for _ in range(2)], algo.explore(torch.ones(2, 2))
    assert a.out[0] == b.out[0]
    torch.testing.assert_close(a.out[1], b.out[1])


# ------------------------------------------------------------------------------------ config, networks


@pytest.mark.parametrize("value", ["auto", 0.2, 1])
def test_alpha_accepts_positive_numbers_and_auto(value) -> None:
    assert build(SAC.Config, {"alpha": value}, "algo").alpha == value


@pytest.mark.parametrize("value", ["learned", 0.0, -0.1])
def test_alpha_rejects_anything_else(value) -> None:
    with pytest.raises(UserError, match=r"algo.alpha=.*: expected a positive number or 'auto'"):
        build(SAC.Config, {"alpha": value}, "algo")


def test_ensemble_batched_and_per_member_paths_agree() -> None:
    ens = EnsembleMLP(3, 2, [16, 16], "relu", n=3)
    x = torch.randn(5, 3)
    ens.batched = True
    batched = ens(x)
    ens.batched = False
    looped = ens(x)
    assert batched.shape == (3, 5, 2)
    torch.testing.assert_close(batched, looped)
    torch.testing.assert_close(ens(x, members=1), looped[:1])


def test_detached_critic_params_get_no_gradient() -> None:
    ens = EnsembleMLP(3, 1, [8], "relu", n=2)
    x = torch.randn(4, 3, requires_grad=True)
    ens(x, detach_params=True).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in ens.parameters())


# ------------------------------------------------------------------------------------ the loop


def small_run(algo: str, steps: int, run_dir, *extra: str) -> dict:
    from rlx.config.compose import compose_config
    from rlx.train.driver import train

    cfg = compose_config([f"algo={algo}", "env=pendulum", f"total_steps={steps}", "algo.learning_starts=50",
                          "algo.batch_size=32", "network.hidden_sizes=[16]", "env.num_envs=2", "eval.every=0",
                          "eval.episodes=2", "checkpoint.every=0", "logger.wandb.mode=disabled", "logger.progress=false",
                          *extra])
    return train(cfg, run_dir)


@pytest.mark.parametrize("algo,extra", [("sac", ()), ("ddpg", ("algo.noise=ou",))])
def test_resume_with_saved_buffer_continues_exactly(algo, extra, tmp_path) -> None:
    from rlx.rundir.checkpoint import load_checkpoint
    from rlx.train.driver import resume

    straight = small_run(algo, 300, tmp_path / "a", *extra)
    small_run(algo, 150, tmp_path / "b", *extra)
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert len(state["loop"]["buffer"]["data"]) == 150  # the replay buffer travels with the checkpoint
    resumed = resume(tmp_path / "b", ["total_steps=300"])
    assert resumed["updates"] == straight["updates"] and resumed["eval_return_mean"] == straight["eval_return_mean"]
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["algo"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["algo"]
    for name, tensor in a["actor"].items():
        torch.testing.assert_close(tensor, b["actor"][name], rtol=0, atol=0)


def test_buffer_left_out_of_checkpoints_when_save_buffer_false(tmp_path) -> None:
    from rlx.rundir.checkpoint import load_checkpoint

    s = small_run("td3", 120, tmp_path, "checkpoint.save_buffer=false")
    assert s["updates"] == 35  # (120 − 50) steps / 2 envs: one update per vector step after learning_starts
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["loop"]["buffer"] is None


@pytest.mark.parametrize("algo,env", [("ddpg", "CartPole-v1"), ("sac", "CartPole-v1"), ("offpolicy_ac", "Acrobot-v1"),
                                      ("sac_discrete", "Pendulum-v1")])
def test_action_space_mismatch_is_a_one_line_error(algo, env) -> None:
    from rlx.envs.make import env_spec
    from rlx.train.run import check_action_space

    with pytest.raises(UserError, match=f"algo={algo} does not support"):
        check_action_space(algo, env_spec(env))
