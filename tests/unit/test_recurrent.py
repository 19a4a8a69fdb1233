"""Recurrent policies (issue 26): the stacked LSTM/GRU against torch's, the state reset at episode starts, the
update's replay of whole env sequences (ratio 1), exact resume mid-episode, members as their plain runs, and
evaluation that carries the state."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlx.algos.a2c import A2C, A2CConfig
from rlx.algos.ppo import PPO, PPOConfig
from rlx.algos.recurrent import env_major, episode_starts
from rlx.config.schema import NetworkConfig
from rlx.envs.make import env_spec
from rlx.errors import UserError
from rlx.members import member_state
from rlx.networks.recurrent import StackedRecurrent
from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import resume, train
from rlx.train.evaluation import Evaluator
from tests.unit.test_one_driver import _assert_same_weights, _cfg, _lines
from tests.unit.test_population import _rollout, state_equals_members, update_equals_members

CPU = torch.device("cpu")
LSTM_NET = NetworkConfig(hidden_sizes=[16], recurrent="lstm", recurrent_hidden=8)


# --- the stacked cell ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_stacked_cell_equals_torch_per_member(kind, layers):
    """K=3 members' stacked LSTM/GRU == each member's torch.nn.LSTM / nn.GRU (1e-5): outputs, final states, and
    the gradients of the inputs, initial states and every weight."""
    torch.manual_seed(0)
    k, t, b, d, h = 3, 5, 4, 6, 7
    modules = [(nn.LSTM if kind == "lstm" else nn.GRU)(d, h, layers) for _ in range(k)]
    stack = StackedRecurrent.from_torch(modules)
    parts = 2 if kind == "lstm" else 1
    x = torch.randn(k, t, b, d, requires_grad=True)
    state = torch.randn(k, b, layers * parts * h, requires_grad=True)
    out, final = stack.sequence(x, state, torch.zeros(k, t, b))
    w_out, w_final = torch.randn_like(out), torch.randn_like(final)
    ((out * w_out).sum() + (final * w_final).sum()).backward()
    for m, module in enumerate(modules):
        xm = x.detach()[m].clone().requires_grad_(True)
        per_layer = state.detach()[m].reshape(b, layers, parts, h).permute(1, 2, 0, 3)  # [layers, parts, B, H]
        h0 = per_layer[:, 0].clone().requires_grad_(True)
        c0 = per_layer[:, 1].clone().requires_grad_(True) if kind == "lstm" else None
        ref_out, ref_state = module(xm, (h0, c0) if c0 is not None else h0)
        ref_final = torch.stack(list(ref_state) if kind == "lstm" else [ref_state], 1)  # [layers, parts, B, H]
        ref_final = ref_final.permute(2, 0, 1, 3).reshape(b, -1)
        torch.testing.assert_close(out[m], ref_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(final[m], ref_final, rtol=1e-5, atol=1e-5)
        ((ref_out * w_out[m]).sum() + (ref_final * w_final[m]).sum()).backward()
        torch.testing.assert_close(x.grad[m], xm.grad, rtol=1e-5, atol=1e-5)
        ref_state_grad = torch.stack([h0.grad, *([c0.grad] if c0 is not None else [])], 1)  # [layers, parts, B, H]
        torch.testing.assert_close(state.grad[m], ref_state_grad.permute(2, 0, 1, 3).reshape(b, -1), rtol=1e-5, atol=1e-5)
        for layer in range(layers):
            for name in ("weight_ih", "weight_hh"):
                torch.testing.assert_close(getattr(stack, name)[layer].grad[m].t(),
                                           getattr(module, f"{name}_l{layer}").grad, rtol=1e-5, atol=1e-5)
            for name in ("bias_ih", "bias_hh"):
                torch.testing.assert_close(getattr(stack, name)[layer].grad[m, 0],
                                           getattr(module, f"{name}_l{layer}").grad, rtol=1e-5, atol=1e-5)


def test_a_member_starts_as_its_plain_run_and_round_trips_to_torch():
    torch.manual_seed(3)
    single = StackedRecurrent.fresh("lstm", 4, 8, 1)
    torch.manual_seed(3)
    reference = nn.LSTM(4, 8, 1)  # torch's own initialization, drawn as a plain nn.LSTM draws it
    for name, p in reference.named_parameters():
        torch.testing.assert_close(getattr(single.to_torch(0), name), p, rtol=0, atol=0)
    stacked = StackedRecurrent.stack([single, StackedRecurrent.fresh("lstm", 4, 8, 1)])
    assert stacked.n == 2 and torch.equal(stacked.weight_ih[0][0], single.weight_ih[0][0])


# --- rollouts: the state carried and reset ---------------------------------------------------------

def test_the_state_is_reset_at_each_episode_start():
    """After an episode ends (terminated or truncated: ``episodes_ended``), the env's next action and value come
    from a fresh state: equal to those of the same policy that never saw the earlier episode, and different
    from what the carried state gives (so the test fails if the reset is skipped)."""
    spec = env_spec("CartPole-v1")
    torch.manual_seed(0)
    algo = PPO(spec, PPOConfig(n_steps=8, batch_size=16), LSTM_NET, CPU, seeds=[0])
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        algo.explore(torch.randn(2, 4, generator=g))
        algo.episodes_ended(np.array([False, False]))
    carried = algo.env_state.clone()
    assert carried.abs().sum() > 0
    algo.episodes_ended(np.array([True, False]))  # env 0's episode ended: its next observation starts one
    obs = torch.randn(2, 4, generator=g)
    value = algo.value(obs)
    _, log_prob, value_explored = algo.explore(obs)
    assert value == pytest.approx(value_explored)

    fresh = PPO(spec, PPOConfig(n_steps=8, batch_size=16), LSTM_NET, CPU, seeds=[0])
    fresh.load_state_dict({**algo.state_dict(), "env_state": None})  # same weights, no history
    fresh.random.load_state_dict(algo.random.state_dict())
    torch.testing.assert_close(fresh.value(obs)[0], value[0], rtol=0, atol=0)
    not_reset = PPO(spec, PPOConfig(n_steps=8, batch_size=16), LSTM_NET, CPU, seeds=[0])
    not_reset.load_state_dict({**algo.state_dict(), "env_state": carried})
    assert not torch.allclose(not_reset.value(obs)[0], value[0])  # the carried state matters
    torch.testing.assert_close(not_reset.value(obs)[1], value[1], rtol=0, atol=0)  # env 1 goes on as it was


def _first_rollout_replay(monkeypatch, algo_name: str, overrides: list[str], tmp_path) -> list[tuple]:
    """Train one real run through the on-policy loop; before each update, replay the rollout's env sequences
    (all at once and one env at a time, as minibatches of one) from the stored state and keep the results."""
    cls = PPO if algo_name == "ppo" else A2C
    original = cls.update
    seen: list[tuple] = []

    def update(self, rollout, progress):
        m = self.members
        per_member = m.per_member(rollout)
        obs, actions, starts = (env_major(x) for x in (per_member.obs, per_member.actions, episode_starts(per_member.done)))
        state = self.stored_start_state(obs.shape[1])
        with torch.no_grad():
            whole = self.replay(obs, actions, starts, state)
            one_by_one = [self.replay(obs[:, i:i + 1], actions[:, i:i + 1], starts[:, i:i + 1], state[:, i:i + 1])
                          for i in range(obs.shape[1])]
        seen.append((env_major(per_member.log_probs).flatten(1, 2), env_major(per_member.values).flatten(1, 2),
                     whole, one_by_one, float(rollout.done.sum())))
        return original(self, rollout, progress)

    monkeypatch.setattr(cls, "update", update)
    train(_cfg(f"algo={algo_name}", "env=cartpole", *overrides), tmp_path / algo_name)
    return seen


@pytest.mark.parametrize("algo_name", ["ppo", "a2c"])
def test_the_replayed_sequences_reproduce_the_rollouts_log_probs_and_values(algo_name, monkeypatch, tmp_path):
    """Replayed from the stored initial state with resets at episode starts (terminations and time-limit
    truncations), an update's env sequences give the rollout's log-probs and values to float32 rounding (PPO's
    ratio is 1 before its first gradient step), for the whole batch and for minibatches of single envs."""
    overrides = ["network.recurrent=lstm", "network.recurrent_hidden=8", "network.hidden_sizes=[16]", "env.num_envs=3",
                 "env.max_episode_steps=12", "algo.n_steps=32", "total_steps=288", "eval.every=0", "eval.episodes=1",
                 *(["algo.batch_size=32", "algo.n_epochs=2"] if algo_name == "ppo" else [])]
    seen = _first_rollout_replay(monkeypatch, algo_name, overrides, tmp_path)
    assert len(seen) == 3 and all(s[4] >= 3 for s in seen)  # several episode ends per rollout
    for log_probs, values, whole, one_by_one, _ in seen:
        # Not bit for bit: the heads' MLPs on the update's 96 rows take StackedMLP's transposed product (acting's
        # 3 rows do not), and a minibatch of one env makes the core's products 1-row ones (BLAS picks other
        # kernels), so the last bit may differ (measured: at most 6e-8), as for a non-recurrent PPO's minibatches.
        # Skipping a reset (either side) moves them by far more (test_the_state_is_reset_at_each_episode_start).
        ratio = torch.exp(whole[0] - log_probs)
        assert float((ratio - 1).abs().max()) < 1e-6
        torch.testing.assert_close(whole[0], log_probs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(whole[2], values, rtol=1e-5, atol=1e-6)
        n_steps = 32
        for i, (logp_i, _, values_i) in enumerate(one_by_one):
            torch.testing.assert_close(logp_i, log_probs[:, i * n_steps:(i + 1) * n_steps], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(values_i, values[:, i * n_steps:(i + 1) * n_steps], rtol=1e-5, atol=1e-6)


def test_recurrent_ppo_batch_size_counts_whole_env_sequences():
    with pytest.raises(UserError, match="multiple of it"):
        PPO(env_spec("CartPole-v1"), PPOConfig(n_steps=32, batch_size=48), LSTM_NET, CPU)


def test_a_recurrent_policy_is_refused_by_algorithms_without_one(tmp_path):
    with pytest.raises(UserError, match="recurrent policies are for algo=ppo and algo=a2c"):
        train(_cfg("algo=trpo", "env=cartpole", "network.recurrent=gru", "total_steps=64"), tmp_path / "trpo")


# --- resume, members, evaluation --------------------------------------------------------------------

RECURRENT_PPO = ["algo=ppo", "env=cartpole", "network.recurrent=gru", "network.recurrent_hidden=8",
                 "network.hidden_sizes=[16]", "algo.n_steps=32", "algo.batch_size=32", "algo.n_epochs=2",
                 "env.num_envs=2", "eval.every=256", "eval.episodes=2", "algo.anneal_lr=false", "algo.anneal_clip=false",
                 "logger.every=128"]


def test_a_stopped_and_resumed_recurrent_run_equals_an_uninterrupted_one(tmp_path):
    """Stopped between rollouts mid-episode (its state non-zero in the checkpoint), resumed: every training log
    line and the final weights equal the uninterrupted run's."""
    train(_cfg(*RECURRENT_PPO, "total_steps=512"), tmp_path / "straight")
    train(_cfg(*RECURRENT_PPO, "total_steps=256"), tmp_path / "stopped")
    state = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt", with_buffer=False)["algo"]
    assert state["env_state"].shape == (1, 2, 2 * 8) and bool((state["env_state"] != 0).any())  # [K, N, S], mid-episode
    resumed = resume(tmp_path / "stopped", ["total_steps=512"])
    assert resumed["env_steps"] == 512
    assert _lines(tmp_path / "straight", training_only=True) == _lines(tmp_path / "stopped", training_only=True)
    _assert_same_weights(tmp_path / "straight", tmp_path / "stopped")


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_recurrent_population_update_equals_each_members_own_update(algo):
    """K=2 recurrent members acting on their envs and updated as one population == each member's plain run
    (1e-5): weights, optimizer state, metrics and the carried states; PPO with minibatches of one env sequence
    (each member's own shuffle)."""
    spec = env_spec("CartPole-v1")
    k, n, t = 2, 2, 8
    if algo == "ppo":
        hps = [PPOConfig(n_steps=t, batch_size=t, n_epochs=2, lr=3e-4, clip_eps=0.1),
               PPOConfig(n_steps=t, batch_size=t, n_epochs=2, lr=1e-3, clip_eps=0.3, ent_coef=0.01)]
        cls: type = PPO
    else:
        hps = [A2CConfig(n_steps=t, lr=7e-4), A2CConfig(n_steps=t, lr=3e-3, gamma=0.9, ent_coef=0.02)]
        cls = A2C
    pop = cls(spec, hps, LSTM_NET, CPU, seeds=[0, 1])
    singles = [cls(spec, h, LSTM_NET, CPU, seeds=[i]) for i, h in enumerate(hps)]
    for i, single in enumerate(singles):
        for a, b in zip(single.model.state_dict().values(), member_state(pop.model.state_dict(), i, k).values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for step in range(2):
        r = _rollout(k, n, t, 4, spec.action_space, seed=step)
        for s in range(t):  # act as the loop does: the states advance and reset per member
            pop.explore(r.obs[s])
            pop.episodes_ended(r.done[s].numpy().astype(bool))
            for i, single in enumerate(singles):
                single.explore(r.obs[s, i * n:(i + 1) * n])
                single.episodes_ended(r.done[s, i * n:(i + 1) * n].numpy().astype(bool))
        update_equals_members(pop, singles, r, n, progress=0.25 * step)
    state_equals_members(pop, singles)
    for i, single in enumerate(singles):
        torch.testing.assert_close(single.state_dict()["env_state"], member_state(pop.state_dict(), i, k)["env_state"],
                                   rtol=1e-5, atol=1e-6)


class _SetsEpisodeLength(gym.Wrapper):
    """CartPole whose episodes end after a fixed number of steps (evaluation episodes of a known length)."""

    def __init__(self, env: gym.Env, length: int = 7):
        super().__init__(env)
        self.length, self.t = length, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, reward, terminated, truncated or self.t >= self.length, info


def test_evaluation_carries_the_state_and_resets_it_at_each_episode_start():
    """The evaluator's returns of a recurrent policy == a hand-written loop that starts every episode from a
    fresh state (CartPoleNoVel-like: the policy sees positions only through its memory of earlier steps)."""
    spec = env_spec("CartPole-v1")
    torch.manual_seed(0)
    algo = PPO(spec, PPOConfig(n_steps=8, batch_size=8), LSTM_NET, CPU, seeds=[0])
    with torch.no_grad():  # weights that make actions depend on the state
        for p in algo.model.parameters():
            p.mul_(4.0)
    wrappers = [{"_target_": f"{__name__}._SetsEpisodeLength", "length": 30}]
    evaluator = Evaluator("CartPole-v1", 4, 5, CPU, max_envs=2, wrappers=wrappers)
    returns = evaluator(algo.act, deterministic=True)  # algo.act, as the Session hands it
    evaluator.close()

    def by_hand(seed: int, episodes: int) -> list[float]:
        env = _SetsEpisodeLength(gym.make("CartPole-v1"), 30)
        out = []
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            state, total, done = algo.initial_state(1), 0.0, False
            start = torch.ones(1, dtype=torch.bool)
            while not done:
                action, state = algo.act_recurrent(torch.as_tensor(obs).unsqueeze(0), state, start)
                start = torch.zeros(1, dtype=torch.bool)
                obs, reward, terminated, truncated, _ = env.step(int(action[0]))
                total, done = total + float(reward), terminated or truncated
            out.append(total)
            obs, _ = env.reset()
        return out

    expected = sorted(by_hand(5, 2) + by_hand(6, 2))
    assert sorted(returns.tolist()) == expected
    with pytest.raises(TypeError, match="act_recurrent"):
        algo.act(torch.zeros(1, 4))
