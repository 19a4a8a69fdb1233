"""Populations (issue 12): K members in one algorithm equal K separate runs, and never see each other."""
from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlx.algos.ppo import PPO, PPOConfig
from rlx.buffers.rollout import Rollout
from rlx.config.schema import NetworkConfig
from rlx.envs.make import env_spec
from rlx.members import Members, member_state, member_view, stack_states
from rlx.networks.dict_obs import obs_map
from rlx.objectives.returns import gae

CPU = torch.device("cpu")
NET = NetworkConfig(hidden_sizes=[16, 16])


def _rollout(k: int, n: int, t: int, obs_dim: int, action_space: gym.Space, seed: int) -> Rollout:
    """A random [T, K*N] rollout (member-major envs) with episode ends and truncations."""
    g = torch.Generator().manual_seed(seed)
    m = k * n
    if isinstance(action_space, gym.spaces.Discrete):
        actions = torch.randint(0, int(action_space.n), (t, m), generator=g)
    else:
        actions = torch.randn(t, m, *action_space.shape, generator=g)
    done = (torch.rand(t, m, generator=g) < 0.15).float()
    terminated = done * (torch.rand(t, m, generator=g) < 0.6).float()
    return Rollout(obs=torch.randn(t, m, obs_dim, generator=g) * 2, actions=actions,
                   log_probs=-torch.rand(t, m, generator=g) - 0.3, values=torch.randn(t, m, generator=g),
                   rewards=torch.randn(t, m, generator=g), terminated=terminated, done=done,
                   next_values=torch.randn(t, m, generator=g))


def _member_rollout(r: Rollout, k: int, n: int) -> Rollout:
    """Member k's columns of ``r`` (a Dict observation: of each key's tensor)."""
    return Rollout(**{f.name: obs_map(lambda x: x[:, k * n : (k + 1) * n].clone(), getattr(r, f.name))
                      for f in dataclasses.fields(r)})


def update_equals_members(pop, singles, r: Rollout, n: int, progress: float) -> None:
    """One population update on ``r`` == each single member's update on its own ``n`` envs' columns (metrics)."""
    pop_metrics = pop.update(r, progress=progress)
    for i, single in enumerate(singles):
        (metrics,) = single.update(_member_rollout(r, i, n), progress=progress)
        for key, value in metrics.items():
            assert pop_metrics[i][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (i, key)


def state_equals_members(pop, singles) -> None:
    """Each single member's weights and optimizer state == its rows of the population's."""
    k = len(singles)
    for i, single in enumerate(singles):
        mine, theirs = single.state_dict(), member_state(pop.state_dict(), i, k)
        for (name, a), b in zip(mine["model"].items(), theirs["model"].values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"member {i} {name}")
        for name, value in mine["optimizer"]["state"].items():  # Adam's moments / RMSprop's square average
            torch.testing.assert_close(value, theirs["optimizer"]["state"][name], rtol=1e-5, atol=1e-7)


MEMBERS = [  # every per-member knob differs; member 1 is clipped hard, member 2 stops its epochs on KL
    dict(lr=3e-4, clip_eps=0.1, gamma=0.99, gae_lambda=0.95, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5),
    dict(lr=1e-3, clip_eps=0.3, gamma=0.9, gae_lambda=0.5, ent_coef=0.01, vf_coef=1.0, max_grad_norm=0.01, anneal_lr=True),
    dict(lr=3e-3, clip_eps=0.2, gamma=0.999, gae_lambda=1.0, ent_coef=0.05, vf_coef=0.25, max_grad_norm=5.0,
         target_kl=1e-4, anneal_clip=True),
]


A2C_MEMBERS = [  # member 1 clipped hard; RMSprop's alpha and eps differ too
    dict(lr=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5),
    dict(lr=3e-3, gamma=0.9, gae_lambda=0.8, ent_coef=0.02, vf_coef=1.0, max_grad_norm=0.01, anneal_lr=True,
         rms_alpha=0.9, optimizer_eps=1e-3),
    dict(lr=1e-4, gamma=0.5, gae_lambda=0.0, ent_coef=0.1, vf_coef=0.25, max_grad_norm=5.0,
         rms_alpha=0.999),
]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_population_update_equals_each_members_own_update(algo, env_id):
    """K members updated as one population == K plain (K=1) runs updated one by one, from the same
    weights and rollout (1e-5): weights, optimizer state and metrics, with every per-member knob
    different. PPO: whole-batch minibatches (shuffles draw from the shared RNG) over 3 epochs x 2 updates."""
    from rlx.algos.a2c import A2C, A2CConfig

    spec = env_spec(env_id)
    k, n, t = 3, 2, 16
    if algo == "ppo":
        cls, common = PPO, dict(n_steps=t, batch_size=t * n, n_epochs=3, normalize_obs=True)
        hps = [PPOConfig(**common, **m) for m in MEMBERS]
    else:
        cls, common = A2C, dict(n_steps=t, normalize_obs=True)
        hps = [A2CConfig(**common, **m) for m in A2C_MEMBERS]
    pop = cls(spec, hps, NET, CPU, seeds=[0, 1, 2])
    singles = [cls(spec, h, NET, CPU, seeds=[i]) for i, h in enumerate(hps)]
    for i, single in enumerate(singles):  # same initial weights as the population's member i
        for a, b in zip(single.model.state_dict().values(), member_state(pop.model.state_dict(), i, k).values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    obs_dim = spec.obs_shape[0]
    for step in range(2):
        r = _rollout(k, n, t, obs_dim, spec.action_space, seed=step)
        pop.explore(r.obs[0])  # the normalizers see the same observations too
        for i, single in enumerate(singles):
            single.explore(r.obs[0, i * n : (i + 1) * n])
        update_equals_members(pop, singles, r, n, progress=0.25 * step)
    state_equals_members(pop, singles)
    for i, single in enumerate(singles):
        theirs = member_state(pop.state_dict(), i, k)
        torch.testing.assert_close(single.state_dict()["optimizer"]["step"], theirs["optimizer"]["step"])
    if algo == "ppo":  # member 2 (target_kl) stopped early: fewer Adam steps than member 0's 2 updates x 3 epochs
        steps = pop.state_dict()["optimizer"]["step"]
        assert steps[0] == 6 and steps[2] < 6


def test_a_masked_member_is_not_updated_and_the_others_are():
    spec = env_spec("CartPole-v1")
    hps = [PPOConfig(n_steps=8, batch_size=16, n_epochs=2) for _ in range(3)]
    pop = PPO(spec, hps, NET, CPU, seeds=[0, 1, 2])
    before = pop.params.detach().clone()
    pop.members.active[1] = False
    pop.update(_rollout(3, 2, 8, 4, spec.action_space, seed=0), 0.0)
    after = pop.params.detach()
    assert torch.equal(after[1], before[1])
    assert not torch.equal(after[0], before[0]) and not torch.equal(after[2], before[2])


def test_minibatches_shuffle_each_member_on_its_own_and_cover_every_sample():
    m = Members(3, CPU, (4,))
    torch.manual_seed(0)
    batches = list(m.minibatches(10, 4))
    assert [tuple(b.shape) for b in batches] == [(3, 4), (3, 4), (3, 2)]
    idx = torch.cat(batches, 1)
    for row in idx:
        assert sorted(row.tolist()) == list(range(10))
    assert not torch.equal(idx[0], idx[1])  # independent shuffles
    x = torch.arange(30.0).reshape(3, 10, 1)
    taken = m.take(x, batches[0])
    for k in range(3):
        assert torch.equal(taken[k, :, 0], x[k, batches[0][k], 0])


def test_split_and_join_are_inverse_and_member_major():
    m = Members(3, CPU, (4,))
    obs = torch.arange(5 * 6 * 4.0).reshape(5, 6, 4)  # [T=5, K*N=6, 4]
    x = m.split(obs)
    assert x.shape == (3, 10, 4)
    assert torch.equal(x[1, 0], obs[0, 2]) and torch.equal(x[1, 1], obs[0, 3]) and torch.equal(x[1, 2], obs[1, 2])
    y = m.join(x[..., 0], obs)
    assert y.shape == (5, 6) and torch.equal(y, obs[..., 0])
    flat = m.split(obs[0])
    assert torch.equal(m.join(flat, obs[0]), obs[0])


def test_gae_with_per_member_gamma_and_lambda_equals_each_members_gae():
    g = torch.Generator().manual_seed(0)
    t, k, n = 7, 3, 2
    r, v, nv = (torch.randn(t, k, n, generator=g) for _ in range(3))
    done = (torch.rand(t, k, n, generator=g) < 0.3).float()
    term = done * (torch.rand(t, k, n, generator=g) < 0.5).float()
    gammas, lams = [0.9, 0.99, 0.5], [0.0, 0.95, 1.0]
    out = gae(r, v, nv, term, done, torch.tensor(gammas).reshape(k, 1), torch.tensor(lams).reshape(k, 1))
    for i in range(k):
        ref = gae(r[:, i], v[:, i], nv[:, i], term[:, i], done[:, i], gammas[i], lams[i])
        torch.testing.assert_close(out[:, i], ref)


def test_member_state_and_stack_states_round_trip():
    state = {"a": torch.arange(6.0).reshape(3, 2), "n": 4, "s": torch.tensor(1.0), "l": [torch.ones(3, 1)]}
    parts = [member_state(state, i, 3) for i in range(3)]
    assert torch.equal(parts[1]["a"], torch.tensor([[2.0, 3.0]])) and parts[1]["n"] == 4
    back = stack_states(parts)
    assert torch.equal(back["a"], state["a"]) and torch.equal(back["l"][0], state["l"][0])
    assert member_state(state, 0, 1) is state


QUIET = ["logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "env=cartpole", "algo=ppo",
         "algo.n_steps=32", "algo.batch_size=64", "algo.n_epochs=2", "env.num_envs=2", "eval.episodes=2"]


def _cfgs(values, extra=()):
    from rlx.config.compose import compose_config

    return [compose_config([*QUIET, *extra, *v]) for v in values]


def test_a_population_writes_one_ordinary_run_dir_per_member(tmp_path):
    from rlx.train.driver import train_job as train_population
    from rlx.train.run import evaluate_checkpoint

    dirs = [tmp_path / "a", tmp_path / "b"]
    summaries = train_population(_cfgs([["algo.clip_eps=0.1", "seed=0"], ["algo.clip_eps=0.3", "seed=1"]],
                                       ["total_steps=640", "eval.every=256"]), dirs)
    assert [s["status"] for s in summaries] == ["ok", "ok"]
    logged = []
    for d, eps, seed in zip(dirs, (0.1, 0.3), (0, 1), strict=True):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == 640 and summary["seed"] == seed and "population" not in summary
        assert f"clip_eps: {eps}" in (d / "config.yaml").read_text()
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert any("eval_return_mean" in x for x in lines) and any("policy_loss" in x for x in lines)
        logged.append([x["clip_eps"] for x in lines if "clip_eps" in x])
    # each member used its own epsilon (the cartpole preset anneals it: compare the two members' lines)
    assert logged[0] and all(a / b == pytest.approx(1 / 3) for a, b in zip(*logged, strict=True))
    for d in dirs:  # rlx eval rebuilds a member as a plain run from its checkpoint: the return of its own final eval
        ev = evaluate_checkpoint(d / "checkpoints" / "last.pt")
        assert ev["return_mean"] == pytest.approx(json.loads((d / "summary.json").read_text())["eval_return_mean"])


def test_a_member_whose_loss_goes_nan_fails_alone(tmp_path, monkeypatch):
    from rlx.train.driver import train_job as train_population

    original = PPO.update

    def poisoned(self, rollout, progress):
        metrics = original(self, rollout, progress)
        if self.updates >= 3:
            metrics[1]["policy_loss"] = float("nan")
        return metrics

    monkeypatch.setattr(PPO, "update", poisoned)
    dirs = [tmp_path / "a", tmp_path / "b"]
    summaries = train_population(_cfgs([["seed=0"], ["seed=1"]], ["total_steps=1280", "checkpoint.every=128"]), dirs)
    assert summaries[0]["status"] == "ok" and summaries[0]["env_steps"] == 1280
    assert summaries[1]["status"] == "failed" and "non-finite policy_loss" in summaries[1]["error"]
    assert json.loads((dirs[1] / "summary.json").read_text())["status"] == "failed"
    assert (dirs[1] / "checkpoints" / "last.pt").is_file()  # the last good checkpoint is kept
    assert summaries[1]["env_steps"] < 1280


def test_members_that_differ_in_a_shape_key_are_refused(tmp_path):
    from rlx.errors import UserError
    from rlx.train.driver import train_job as train_population

    with pytest.raises(UserError, match="cannot vary within one population"):
        train_population(_cfgs([["algo.n_steps=32"], ["algo.n_steps=64"]]), [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


def test_sigterm_checkpoints_every_member_and_resume_of_the_sweep_dir_continues_the_population(tmp_path):
    import signal
    import subprocess
    import sys

    from rlx.train.driver import train_job as train_population

    dirs = [tmp_path / "a", tmp_path / "b"]
    train_population(_cfgs([["algo.clip_eps=0.1"], ["algo.clip_eps=0.3"]], ["total_steps=256", "eval.every=0"]), dirs)
    cli = [sys.executable, "-c", "from rlx.app.cli import main; main()", "resume"]
    p = subprocess.Popen([*cli, str(tmp_path), "total_steps=100000000", "logger.progress=true", "logger.every=128"],
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert p.stderr is not None
    for line in p.stderr:  # wait until it is training
        if line.startswith("step"):
            break
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    stopped = [json.loads((d / "summary.json").read_text()) for d in dirs]
    assert [s["status"] for s in stopped] == ["stopped", "stopped"]
    steps = stopped[0]["env_steps"]
    assert steps > 256 and stopped[1]["env_steps"] == steps  # both members checkpointed at the same step
    total = steps + 256
    r = subprocess.run([*cli, str(tmp_path), f"total_steps={total}"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "rlx: resuming a, b" in r.stderr and "population of 2 in one process" in r.stderr
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["env_steps"] == total
        logged = [json.loads(x)["env_steps"] for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert logged == sorted(logged) and logged[-1] == total  # one history, nothing lost or repeated


def test_an_off_policy_member_whose_loss_goes_nan_fails_alone(tmp_path, monkeypatch):
    from rlx.algos.sac import SAC
    from rlx.config.compose import compose_config
    from rlx.train.driver import train_job as train_population

    original = SAC.update

    def poisoned(self, batch, progress):
        metrics = original(self, batch, progress)
        if self.updates >= 50:
            with torch.no_grad():  # member 1's weights and loss go NaN
                next(self.actor.parameters())[1].fill_(float("nan"))
            metrics[1]["actor_loss"] = float("nan")
        return metrics

    monkeypatch.setattr(SAC, "update", poisoned)
    cfgs = [compose_config(["algo=sac", "env=pendulum", "total_steps=400", "algo.learning_starts=100", "eval.every=0",
                            "eval.episodes=1", "network.hidden_sizes=[16]", f"seed={s}", "logger.wandb.mode=disabled",
                            "logger.tensorboard=false", "logger.progress=false", "checkpoint.every=100"]) for s in (0, 1)]
    summaries = train_population(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert summaries[0]["status"] == "ok" and summaries[0]["env_steps"] == 400
    assert summaries[1]["status"] == "failed" and "non-finite actor_loss" in summaries[1]["error"]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_member_view_acts_as_its_member_and_follows_updates(env_id):
    """member_view(model, k): member k alone (one member's forward), equal to row k of the whole stack's
    output, before and after an update and a normalizer step (its tensors are views, not copies)."""
    spec = env_spec(env_id)
    cfgs = [PPOConfig(**{**m, "n_steps": 8, "batch_size": 16, "n_epochs": 2, "normalize_obs": True}) for m in MEMBERS]
    pop = PPO(spec, cfgs, NET, CPU, seeds=[0, 1, 2])
    views = [member_view(pop.model, k, 3) for k in range(3)]
    obs = torch.randn(5, spec.obs_shape[0]) * 3
    for step in range(2):
        with torch.inference_mode():
            whole = pop.model.act(obs.expand(3, *obs.shape), deterministic=True)
            for k, v in enumerate(views):
                torch.testing.assert_close(v.act(obs.unsqueeze(0), deterministic=True)[0], whole[k], rtol=0, atol=1e-6)
        pop.explore(torch.randn(3 * 4, spec.obs_shape[0]))  # moves the normalizer statistics
        pop.update(_rollout(3, 4, 8, spec.obs_shape[0], spec.action_space, seed=step), 0.5)  # moves the weights
    assert not any(p.requires_grad for v in views for p in v.parameters())


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_an_evaluator_of_blocks_gives_each_block_its_own_evaluators_returns(env_id):
    """Evaluator(seeds=[...]).evaluate_blocks: block b's returns are those of an Evaluator of seeds[b] alone
    (same episodes, same order), with one act call for all blocks; blocks not asked for are not counted."""
    from rlx.train.evaluation import Evaluator

    spec = env_spec(env_id)
    seeds, episodes = [7, 100, 3], 5
    weights = torch.randn(len(seeds), spec.obs_shape[0], generator=torch.Generator().manual_seed(0))

    def policy(w: torch.Tensor):
        def act(obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
            score = obs @ w
            return (score > 0).long() if env_id == "CartPole-v1" else score.unsqueeze(-1)
        return act

    calls = []

    def act_all(obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        calls.append(len(obs))
        blocks = obs.reshape(len(seeds), -1, obs.shape[-1])
        return torch.cat([policy(weights[b])(blocks[b]) for b in range(len(seeds))])

    together = Evaluator(env_id, episodes, seeds, CPU, max_envs=3)
    both = together.evaluate_blocks(act_all, [2, 0])
    assert sorted(both) == [0, 2] and set(calls) == {3 * len(seeds)}
    for b in (0, 2):
        alone = Evaluator(env_id, episodes, seeds[b], CPU, max_envs=3)
        expected = alone(policy(weights[b]))
        assert len(both[b]) == episodes
        np.testing.assert_allclose(both[b], expected, rtol=1e-6)
        alone.close()
    with pytest.raises(ValueError, match="evaluate_blocks"):
        together(act_all)
    together.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_a_populations_members_evaluate_together_as_each_would_alone(env_id):
    """MemberEvaluations: one evaluation pass per round for every expected member, each member's returns
    those of its own evaluator acting with its own weights (MemberView)."""
    from rlx.train.evaluation import Evaluator
    from rlx.train.population import MemberEvaluations, MemberView

    spec = env_spec(env_id)
    pop = PPO(spec, [PPOConfig(**m) for m in MEMBERS], NET, CPU, seeds=[0, 1, 2])
    seeds = [10, 11, 12]
    evaluator = Evaluator(env_id, 4, seeds, CPU)
    passes = []
    original = evaluator.evaluate_blocks
    evaluator.evaluate_blocks = lambda act, blocks, deterministic=True: passes.append(sorted(blocks)) or original(act, blocks)
    shared = MemberEvaluations(pop, evaluator)
    for expected_members in ([0, 1, 2], [1]):  # a round, then a round where only member 1 is expected
        shared.new_round(lambda members=expected_members: members)
        for k in expected_members:
            alone = Evaluator(env_id, 4, seeds[k], CPU)
            np.testing.assert_allclose(shared.member(k)(MemberView(pop, k).act), alone(MemberView(pop, k).act), rtol=1e-5)
            alone.close()
    assert passes == [[0, 1, 2], [1]]
    evaluator.close()
