"""Off-policy populations (issue 12): K SAC members in one algorithm equal K separate runs, never see
each other's weights, optimizer state, temperature or transitions."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlx.networks.off_policy as off_policy_nets
from rlx.algos.compiled import UpdateStep, set_compile
from rlx.algos.sac import SAC, SACConfig
from rlx.buffers.replay import MemberReplayBuffer, ReplayBuffer, Transitions, make_replay_buffer
from rlx.config.schema import NetworkConfig
from rlx.envs.make import env_spec
from rlx.members import member_state

CPU = torch.device("cpu")
NET = NetworkConfig(hidden_sizes=[16, 16])

# every per-member knob differs; members 0 and 2 share an lr (one fused Adam call for both), member 1's α
# is fixed in a population whose other members learn theirs
MEMBERS = [dict(lr=1e-3, tau=0.005, alpha="auto", gamma=0.99),
           dict(lr=3e-4, tau=0.02, alpha=0.1, gamma=0.9),
           dict(lr=1e-3, tau=0.5, alpha="auto", gamma=0.5)]


def _batch(k: int, b: int, seed: int) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    return Transitions(obs=torch.randn(k, b, 3, generator=g), actions=torch.rand(k, b, 1, generator=g) * 4 - 2,
                       rewards=torch.randn(k, b, generator=g), next_obs=torch.randn(k, b, 3, generator=g),
                       terminated=(torch.rand(k, b, generator=g) < 0.2).float())


def flat_tensors(state) -> list[torch.Tensor]:
    """Every tensor of a (nested) state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in flat_tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in flat_tensors(v)]
    return []


@pytest.fixture
def noise(monkeypatch):
    """The actor's reparameterization noise from a queue the test fills (the population draws [K, B, A]
    at once, its members one by one: same ε per member either way)."""
    queue: list[torch.Tensor] = []
    real = off_policy_nets.tanh_gaussian_sample
    monkeypatch.setattr(off_policy_nets, "tanh_gaussian_sample",
                        lambda mean, log_std, noise=None: real(mean, log_std, noise=queue.pop(0)))
    return queue


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_sac_population_update_equals_each_members_own_update(noise, compiled, monkeypatch):
    """K=3 SAC members (different lr, tau, alpha auto/fixed, gamma) updated as one population == 3 plain
    (K=1) SACs updated one by one from the same weights, batches and noise (1e-5): weights, targets,
    Adam moments and steps, log-alpha and its optimizer, metrics; over 3 updates. ``compiled``: every
    update step torch.compile'd (compile=true), traced by dynamo and AOT autograd with the ``aot_eager``
    backend (inductor's kernels against eager: tests/unit/test_compile.py; four inductor compiles here
    would cost ~2 min of CI)."""
    spec = env_spec("Pendulum-v1")
    k, b = len(MEMBERS), 8
    hps = [SACConfig(**m) for m in MEMBERS]
    pop = SAC(spec, hps, NET, CPU, seeds=[0, 1, 2])
    singles = [SAC(spec, h, NET, CPU, seeds=[i]) for i, h in enumerate(hps)]
    if compiled:
        monkeypatch.setattr(UpdateStep, "backend", "aot_eager")
        assert all(set_compile(a, True, CPU) for a in (pop, *singles))
    for i, single in enumerate(singles):  # members start as their plain runs
        for a, c in zip(flat_tensors(single.state_dict()), flat_tensors(member_state(pop.state_dict(), i, k)), strict=True):
            torch.testing.assert_close(a, c, rtol=0, atol=0)
    for step in range(3):
        batch = _batch(k, b, seed=step)
        eps = [torch.randn(k, b, 1), torch.randn(k, b, 1)]  # a ~ π(s), a' ~ π(s')
        noise[:] = list(eps)
        pop_metrics = pop.update(batch, 0.0)
        for i, single in enumerate(singles):
            noise[:] = [e[i : i + 1] for e in eps]
            (metrics,) = single.update(Transitions(*(x[i] for x in batch)), 0.0)  # a plain buffer's [B, ...]
            for key, value in metrics.items():
                assert pop_metrics[i][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, i, key)
    for i, single in enumerate(singles):
        mine, theirs = single.state_dict(), member_state(pop.state_dict(), i, k)
        assert mine.keys() == theirs.keys()
        for name in mine:
            for a, c in zip(flat_tensors(mine[name]), flat_tensors(theirs[name]), strict=True):
                torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6, msg=f"member {i}: {name}")
    assert pop.state_dict()["critic_opt"]["step"].tolist() == [3, 3, 3]
    # the fixed member's alpha never moved; the learned ones did
    log_alpha = pop.temperature.log_alpha.detach()[:, 0]
    assert log_alpha[1].item() == pytest.approx(np.log(0.1)) and log_alpha[0] != 0 and log_alpha[2] != 0
    assert pop.temperature.optimizer.step_count.tolist() == [3, 0, 3]


def test_a_masked_sac_member_is_untouched_and_the_others_train():
    spec = env_spec("Pendulum-v1")
    pop = SAC(spec, [SACConfig(**m) for m in MEMBERS], NET, CPU, seeds=[0, 1, 2])
    pop.update(_batch(3, 8, seed=0), 0.0)  # some optimizer state and a moved target first
    before = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    pop.members.active[2] = False
    pop.update(_batch(3, 8, seed=1), 0.0)
    after = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    for a, c in zip(flat_tensors(before[2]), flat_tensors(after[2]), strict=True):
        assert torch.equal(a, c)
    for i in (0, 1):
        for name in ("actor", "critic", "critic_target"):
            assert not all(torch.equal(a, c) for a, c in zip(flat_tensors(before[i][name]), flat_tensors(after[i][name]), strict=True))
    assert pop.temperature.log_alpha.detach()[2, 0] == before[2]["temperature"]["log_alpha"][0, 0]


def _step(k: int, n: int, t: int, done_every: int = 7):
    """One member-major vector step of K*N envs: obs = 1000*member + 10*t + env (so every row names its
    member), a finished episode's final observation in info."""
    envs = np.arange(k * n)
    member, env = envs // n, envs % n
    obs = (1000 * member + 10 * t + env).astype(np.float32)[:, None].repeat(3, 1)
    nxt = obs + 10
    done = np.full(k * n, t % done_every == done_every - 1)
    info = {"final_obs": np.where(done[:, None], nxt + 0.5, np.nan), "_final_obs": done} if done.any() else {}
    return obs, np.full((k * n, 1), t, np.float32), nxt, member.astype(np.float32), done, np.zeros(k * n, bool), info


def test_population_replay_samples_each_member_only_from_its_own_envs():
    k, n, capacity = 3, 2, 20
    buf = make_replay_buffer(capacity, gym.spaces.Box(-1e6, 1e6, (3,)), (1,), False, CPU, members=k)
    assert isinstance(buf, MemberReplayBuffer)
    for t in range(25):  # wraps around: 50 transitions per member into 20
        obs, actions, nxt, rewards, term, trunc, info = _step(k, n, t)
        buf.add(obs, actions, nxt, rewards, term, trunc, info)
    assert len(buf) == capacity
    torch.manual_seed(0)
    batch = buf.sample(500)
    assert batch.obs.shape == (k, 500, 3) and batch.actions.shape == (k, 500, 1) and batch.rewards.shape == (k, 500)
    for m in range(k):
        assert (batch.obs[m] // 1000 == m).all() and (batch.rewards[m] == m).all()
        step = (batch.obs[m, :, 0] % 1000) // 10
        assert step.min() >= 15  # only the newest 10 steps x 2 envs survive
        assert torch.equal(batch.actions[m, :, 0], step)
        # s' is the same env's next observation (its final one where the episode ended)
        assert torch.all((batch.next_obs[m] - batch.obs[m] == 10) | (batch.next_obs[m] - batch.obs[m] == 10.5))
    assert len(torch.unique(batch.obs[0, :, 0])) == capacity * 1  # all 20 of member 0's rows are drawn


def test_a_plain_run_keeps_the_plain_replay_buffer():
    buf = make_replay_buffer(10, gym.spaces.Box(-1, 1, (3,)), (1,), False, CPU)
    assert type(buf) is ReplayBuffer
    with pytest.raises(Exception, match="image observations is not supported"):
        make_replay_buffer(10, gym.spaces.Box(0, 255, (4, 8, 8), np.uint8), (1,), False, CPU, members=2)


QUIET = ["logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "env=pendulum", "algo=sac",
         "network.hidden_sizes=[32,32]", "algo.learning_starts=100", "algo.batch_size=32", "eval.episodes=2"]


def test_a_sac_population_writes_one_ordinary_run_dir_per_member(tmp_path):
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job as train_population
    from rlx.train.run import evaluate_checkpoint

    dirs = [tmp_path / "a", tmp_path / "b"]
    members = [["algo.alpha=auto", "algo.tau=0.005", "seed=0"], ["algo.alpha=0.1", "algo.tau=0.02", "seed=1"]]
    cfgs = [compose_config([*QUIET, "total_steps=400", "eval.every=200", *m]) for m in members]
    summaries = train_population(cfgs, dirs)
    assert [s["status"] for s in summaries] == ["ok", "ok"]
    alphas = []
    for d, seed in zip(dirs, (0, 1), strict=True):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == 400 and summary["seed"] == seed and "population" not in summary
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert any("eval_return_mean" in x for x in lines) and any("critic_loss" in x for x in lines)
        alphas.append([x["alpha"] for x in lines if "alpha" in x])
    assert all(a != pytest.approx(0.1) for a in alphas[0]) and all(a == pytest.approx(0.1) for a in alphas[1])
    assert "alpha: 0.1" in (dirs[1] / "config.yaml").read_text()
    for d in dirs:  # rlx eval rebuilds a member as a plain run from its checkpoint: its own final eval's return
        ev = evaluate_checkpoint(d / "checkpoints" / "last.pt")
        assert ev["return_mean"] == pytest.approx(json.loads((d / "summary.json").read_text())["eval_return_mean"])


# ------------------------------------------------------------------------------------ TD3 and DDPG

# every per-member knob differs (members 0 and 2 share an lr); the noise process and TD3's policy delay are shared
DETERMINISTIC_MEMBERS = [dict(lr=1e-3, tau=0.005, gamma=0.99, noise_std=0.1, target_policy_noise=0.2, target_noise_clip=0.5),
                         dict(lr=3e-4, tau=0.02, gamma=0.9, noise_std=0.3, target_policy_noise=0.05, target_noise_clip=0.1),
                         dict(lr=1e-3, tau=0.5, gamma=0.5, noise_std=0.0, target_policy_noise=0.6, target_noise_clip=0.3)]


def _deterministic_configs(algo: str, noise_kind: str) -> list:
    from rlx.algos.ddpg import DDPGConfig
    from rlx.algos.td3 import TD3Config

    if algo == "td3":
        return [TD3Config(**m, noise=noise_kind) for m in DETERMINISTIC_MEMBERS]
    drop = ("target_policy_noise", "target_noise_clip")
    return [DDPGConfig(**{k: v for k, v in m.items() if k not in drop}, noise=noise_kind)
            for m in DETERMINISTIC_MEMBERS]


@pytest.fixture
def target_noise(monkeypatch):
    """TD3's smoothing noise ε/σ from a queue the test fills (the population draws [K, B, A] at once, its
    members one by one: the same ε per member either way); σ and c stay the algorithm's own."""
    import rlx.algos.td3 as td3

    queue: list[torch.Tensor] = []
    real = td3.td3_smoothed_target_action
    monkeypatch.setattr(td3, "td3_smoothed_target_action",
                        lambda mu, std, clip, low, high, noise=None: real(mu, std, clip, low, high, noise=std * queue.pop(0)))
    return queue


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_a_td3_or_ddpg_population_update_equals_each_members_own_update(algo, target_noise):
    """K=3 TD3/DDPG members (different lr, tau, gamma, exploration sigma, TD3 target noise sigma and clip)
    updated as one population == 3 plain (K=1) runs updated one by one from the same weights, batches and
    smoothing noise (1e-5): weights, targets, Adam moments and steps, metrics; over 4 updates (TD3: two
    delayed actor steps)."""
    from rlx.algos.registry import ALGOS

    cls = ALGOS[algo]
    spec = env_spec("Pendulum-v1")
    k, b = len(DETERMINISTIC_MEMBERS), 8
    hps = _deterministic_configs(algo, "gaussian")
    pop = cls(spec, hps, NET, CPU, seeds=[0, 1, 2])
    singles = [cls(spec, h, NET, CPU, seeds=[i]) for i, h in enumerate(hps)]
    for i, single in enumerate(singles):  # members start as their plain runs
        for a, c in zip(flat_tensors(single.state_dict()), flat_tensors(member_state(pop.state_dict(), i, k)), strict=True):
            torch.testing.assert_close(a, c, rtol=0, atol=0)
    for step in range(4):
        batch = _batch(k, b, seed=step)
        eps = torch.randn(k, b, 1)
        target_noise[:] = [eps]
        pop_metrics = pop.update(batch, 0.0)
        for i, single in enumerate(singles):
            target_noise[:] = [eps[i : i + 1]]
            (metrics,) = single.update(Transitions(*(x[i] for x in batch)), 0.0)  # a plain buffer's [B, ...]
            for key, value in metrics.items():
                assert pop_metrics[i][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, i, key)
    assert target_noise == [] or algo == "ddpg"
    for i, single in enumerate(singles):
        mine, theirs = single.state_dict(), member_state(pop.state_dict(), i, k)
        assert mine.keys() == theirs.keys()
        for name in mine:
            for a, c in zip(flat_tensors(mine[name]), flat_tensors(theirs[name]), strict=True):
                torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6, msg=f"member {i}: {name}")
    assert pop.critic_opt.step_count.tolist() == [4, 4, 4]
    assert pop.actor_opt.step_count.tolist() == ([2, 2, 2] if algo == "td3" else [4, 4, 4])
    # the members' targets moved by their own tau: member 2 (tau 0.5) is far closer to its online critic
    gap = [(t[i] - o[i]).abs().sum().item() for t, o in [(pop.critic_target.net.weights[0], pop.critic.net.weights[0])]
           for i in range(k)]
    assert gap[2] < gap[0]


@pytest.mark.parametrize("algo,noise_kind", [("td3", "gaussian"), ("ddpg", "ou")])
def test_population_exploration_noise_is_each_members_own(algo, noise_kind):
    """Member k's envs k*N .. (k+1)*N-1 act as member k's plain run on them: its own actor, its own noise σ
    and noise stream, one process per env; an episode end resets only that env's OU process."""
    from rlx.algos.registry import ALGOS

    cls = ALGOS[algo]
    spec = env_spec("Pendulum-v1")
    k, n = len(DETERMINISTIC_MEMBERS), 2
    hps = _deterministic_configs(algo, noise_kind)
    pop = cls(spec, hps, NET, CPU, seeds=[0, 1, 2])
    singles = [cls(spec, h, NET, CPU, seeds=[i]) for i, h in enumerate(hps)]
    obs = torch.randn(k * n, 3)
    done = np.array([False, True, True, False, False, False])
    for t in range(4):
        together = pop.explore(obs)
        for i, single in enumerate(singles):
            torch.testing.assert_close(together[i * n : (i + 1) * n], single.explore(obs[i * n : (i + 1) * n]), rtol=0, atol=0)
        torch.testing.assert_close(pop.act(obs), torch.cat([s.act(obs[i * n : (i + 1) * n]) for i, s in enumerate(singles)]))
        if t == 1:
            pop.episodes_ended(done)
            for i, single in enumerate(singles):
                single.episodes_ended(done[i * n : (i + 1) * n])
    # member 2's σ is 0: it acts deterministically; the others do not
    torch.testing.assert_close(pop.explore(obs)[4:], pop.act(obs)[4:])
    assert not torch.equal(pop.explore(obs)[:4], pop.act(obs)[:4])
    for i in range(k):  # evaluation acts as member i on any batch
        torch.testing.assert_close(pop.act_member(i, obs), singles[i].act(obs))
    assert len(pop.noise.processes) == k * n
    state = pop.noise.state_dict()  # a plain run's layout, all members' processes; restores exactly
    again = cls(spec, hps, NET, CPU, seeds=[0, 1, 2])
    again.noise.load_state_dict(state)
    np.testing.assert_array_equal(again.noise.sample(k * n), pop.noise.sample(k * n))


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_a_masked_td3_or_ddpg_member_is_untouched_and_the_others_train(algo):
    from rlx.algos.registry import ALGOS

    cls = ALGOS[algo]
    spec = env_spec("Pendulum-v1")
    pop = cls(spec, _deterministic_configs(algo, "gaussian"), NET, CPU, seeds=[0, 1, 2])
    pop.update(_batch(3, 8, seed=0), 0.0)  # some optimizer state and moved targets first
    pop.update(_batch(3, 8, seed=1), 0.0)
    before = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    pop.members.active[2] = False
    for seed in (2, 3):  # TD3: one of these is a delayed actor step
        pop.update(_batch(3, 8, seed=seed), 0.0)
    after = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    for a, c in zip(flat_tensors(before[2]), flat_tensors(after[2]), strict=True):
        assert torch.equal(a, c)
    for i in (0, 1):
        for name in ("actor", "actor_target", "critic", "critic_target"):
            assert not all(torch.equal(a, c) for a, c in zip(flat_tensors(before[i][name]), flat_tensors(after[i][name]), strict=True))
    assert pop.critic_opt.step_count.tolist() == [4, 4, 2]


def test_a_td3_population_writes_one_ordinary_run_dir_per_member(tmp_path):
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job as train_population
    from rlx.train.population import population_group_key
    from rlx.train.run import evaluate_checkpoint

    quiet = ["logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "env=pendulum",
             "algo=td3", "network.hidden_sizes=[32,32]", "algo.learning_starts=100", "algo.batch_size=32",
             "eval.episodes=2", "total_steps=400", "eval.every=200"]
    dirs = [tmp_path / "a", tmp_path / "b"]
    members = [["algo.target_policy_noise=0.2", "algo.noise_std=0.1", "algo.tau=0.005", "seed=0"],
               ["algo.target_policy_noise=0.05", "algo.noise_std=0.3", "algo.tau=0.02", "seed=1"]]
    cfgs = [compose_config([*quiet, *m]) for m in members]
    assert population_group_key(cfgs[0]) == population_group_key(cfgs[1])  # one population
    summaries = train_population(cfgs, dirs)
    assert [s["status"] for s in summaries] == ["ok", "ok"]
    for d, seed in zip(dirs, (0, 1), strict=True):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == 400 and summary["seed"] == seed and "population" not in summary
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert any("eval_return_mean" in x for x in lines) and any("critic_loss" in x for x in lines)
    assert "target_policy_noise: 0.05" in (dirs[1] / "config.yaml").read_text()
    assert "noise_std: 0.3" in (dirs[1] / "config.yaml").read_text()
    for d in dirs:  # rlx eval rebuilds a member as a plain run from its checkpoint: its own final eval's return
        ev = evaluate_checkpoint(d / "checkpoints" / "last.pt")
        assert ev["return_mean"] == pytest.approx(json.loads((d / "summary.json").read_text())["eval_return_mean"])
