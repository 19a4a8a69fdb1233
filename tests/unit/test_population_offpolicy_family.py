"""Off-policy actor-critic, SAC-V and discrete SAC with a member dimension (issue 22): a population's
update is each member's own plain-run (K=1) update, a masked member is untouched, and member 0 of a
population trains as its plain run through the driver. Every member draws its actions and its update's
samples from its own random stream (keyed by its seed), so no noise is patched in: the population and
the plain runs draw the same values by construction."""
from __future__ import annotations

import json

import pytest
import torch

from rlx.algos.offpolicy_ac import OffPolicyAC, OffPolicyACConfig
from rlx.algos.sac_discrete import SACDiscrete, SACDiscreteConfig
from rlx.algos.sac_v import SACV, SACVConfig
from rlx.buffers.replay import Transitions
from rlx.config.schema import NetworkConfig
from rlx.envs.make import env_spec
from rlx.members import member_state
from tests.unit.test_population_offpolicy import flat_tensors

CPU = torch.device("cpu")
NET = NetworkConfig(hidden_sizes=[16, 16])

# every per-member knob differs (off-policy AC's normalize_weights is a switch: shared); members 0 and 2
# share an lr (one fused Adam call for both); member 1's α is fixed where the others learn theirs
SETUPS = {
    "offpolicy_ac": (OffPolicyAC, "Pendulum-v1", [
        OffPolicyACConfig(lr=1e-3, tau=0.005, gamma=0.99, ent_coef=0.01),
        OffPolicyACConfig(lr=3e-4, tau=0.02, gamma=0.9, ent_coef=0.0),
        OffPolicyACConfig(lr=1e-3, tau=0.5, gamma=0.5, ent_coef=0.1)]),
    "sac_v": (SACV, "Pendulum-v1", [
        SACVConfig(lr=1e-3, tau=0.005, gamma=0.99, alpha="auto"),
        SACVConfig(lr=3e-4, tau=0.02, gamma=0.9, alpha=0.1),
        SACVConfig(lr=1e-3, tau=0.5, gamma=0.5, alpha="auto")]),
    "sac_discrete": (SACDiscrete, "CartPole-v1", [
        SACDiscreteConfig(lr=1e-3, tau=0.005, gamma=0.99, alpha="auto", target_entropy_scale=0.98),
        SACDiscreteConfig(lr=3e-4, tau=0.02, gamma=0.9, alpha=0.1, target_entropy_scale=0.5),
        SACDiscreteConfig(lr=1e-3, tau=0.5, gamma=0.5, alpha="auto", target_entropy_scale=0.2)]),
}
ALGOS = list(SETUPS)


def _batch(algo: str, k: int, b: int, seed: int) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    dim = 4 if algo == "sac_discrete" else 3
    actions = torch.randint(0, 2, (k, b), generator=g) if algo == "sac_discrete" else torch.rand(k, b, 1, generator=g) * 4 - 2
    return Transitions(obs=torch.randn(k, b, dim, generator=g), actions=actions, rewards=torch.randn(k, b, generator=g),
                       next_obs=torch.randn(k, b, dim, generator=g), terminated=(torch.rand(k, b, generator=g) < 0.2).float())


def _population(algo: str):
    cls, env, hps = SETUPS[algo]
    spec = env_spec(env)
    return cls(spec, hps, NET, CPU, seeds=[0, 1, 2]), [cls(spec, h, NET, CPU, seeds=[i]) for i, h in enumerate(hps)], spec


@pytest.mark.parametrize("algo", ALGOS)
def test_a_population_update_equals_each_members_own_update(algo):
    """K=3 members (every per-member knob different) acting and updated as one population == 3 plain (K=1)
    runs acting and updated one by one from the same weights and batches (1e-5): actions, weights, targets,
    Adam moments and steps, log-alpha and its optimizer, random streams, metrics; over 3 updates."""
    pop, singles, spec = _population(algo)
    k, b, n = 3, 8, 2
    for i, single in enumerate(singles):  # members start as their plain runs
        for a, c in zip(flat_tensors(single.state_dict()), flat_tensors(member_state(pop.state_dict(), i, k)), strict=True):
            torch.testing.assert_close(a, c, rtol=0, atol=0)
    obs = torch.randn(k * n, *spec.obs_shape)
    for step in range(3):
        together = pop.explore(obs)  # member k's envs k*N .. (k+1)*N-1 from member k's own actor and stream
        for i, single in enumerate(singles):
            torch.testing.assert_close(together[i * n:(i + 1) * n], single.explore(obs[i * n:(i + 1) * n]))
        batch = _batch(algo, k, b, seed=step)
        pop_metrics = pop.update(batch, 0.0)
        for i, single in enumerate(singles):
            (metrics,) = single.update(Transitions(*(x[i] for x in batch)), 0.0)  # a plain buffer's [B, ...]
            assert metrics.keys() == pop_metrics[i].keys()
            for key, value in metrics.items():
                assert pop_metrics[i][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, i, key)
    for i, single in enumerate(singles):
        mine, theirs = single.state_dict(), member_state(pop.state_dict(), i, k)
        assert mine.keys() == theirs.keys()
        for name in mine:
            for a, c in zip(flat_tensors(mine[name]), flat_tensors(theirs[name]), strict=True):
                torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6, msg=f"member {i}: {name}")
        torch.testing.assert_close(pop.act_member(i, obs), single.act(obs))  # evaluation acts as member i
    assert pop.critic_opt.step_count.tolist() == [3, 3, 3]
    if algo != "offpolicy_ac":  # the fixed member's α never moved; the learned ones did
        log_alpha = pop.temperature.log_alpha.detach()[:, 0]
        assert log_alpha[1].item() == pytest.approx(torch.log(torch.tensor(0.1)).item())
        assert log_alpha[0] != 0 and log_alpha[2] != 0
        assert pop.temperature.optimizer.step_count.tolist() == [3, 0, 3]


@pytest.mark.parametrize("algo", ALGOS)
def test_a_masked_member_is_untouched_and_the_others_train(algo):
    pop, _, _ = _population(algo)
    pop.update(_batch(algo, 3, 8, seed=0), 0.0)  # some optimizer state and a moved target first
    before = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    pop.members.active[2] = False
    pop.update(_batch(algo, 3, 8, seed=1), 0.0)
    after = [member_state(pop.state_dict(), i, 3) for i in range(3)]
    for name in before[2]:
        if name != "updates":  # the population's count of update calls
            for a, c in zip(flat_tensors(before[2][name]), flat_tensors(after[2][name]), strict=True):
                assert torch.equal(a, c), name
    trained = ("actor", "critic", "value", "value_target") if algo == "sac_v" else ("actor", "critic", "critic_target")
    for i in (0, 1):
        for name in trained:
            pairs = zip(flat_tensors(before[i][name]), flat_tensors(after[i][name]), strict=True)
            assert not all(torch.equal(a, c) for a, c in pairs), name
    assert pop.critic_opt.step_count.tolist() == [2, 2, 1]


# ------------------------------------------------------------------------------------ the driver

QUIET = ["logger.wandb.mode=disabled", "logger.tensorboard=false", "logger.progress=false", "checkpoint.every=0",
         "network.hidden_sizes=[16]", "algo.learning_starts=100", "algo.batch_size=32", "env.num_envs=2",
         "eval.every=200", "eval.episodes=2", "logger.every=100", "total_steps=600"]
ENVS = {"offpolicy_ac": "env=pendulum", "sac_v": "env=pendulum", "sac_discrete": "env=cartpole"}
# member 1 differs in its seed and in per-member knobs: member 0 must not notice it
OTHER = {"offpolicy_ac": ["algo.lr=3e-4", "algo.tau=0.02", "algo.ent_coef=0.05"],
         "sac_v": ["algo.lr=1e-4", "algo.tau=0.02", "algo.alpha=0.1"],
         "sac_discrete": ["algo.lr=1e-4", "algo.alpha=0.1", "algo.target_entropy_scale=0.5"]}
WALL_CLOCK = ("wall_s", "sps")


@pytest.mark.parametrize("algo", ALGOS)
def test_member_0_of_a_population_trains_as_its_plain_run(algo, tmp_path):
    """600 env steps (250 updates) through the driver: member 0 of K=2 (member 1 with another seed and
    other hyperparameters beside it) vs its plain run: the same episodes and evaluations, the same losses
    to float rounding (1e-5), and the same weights (1e-5)."""
    from rlx.config.compose import compose_config
    from rlx.rundir.checkpoint import load_checkpoint
    from rlx.train.driver import train, train_job

    base = [*QUIET, f"algo={algo}", ENVS[algo]]
    train(compose_config([*base, "seed=0"]), tmp_path / "plain")
    summaries = train_job([compose_config([*base, "seed=0"]),
                           compose_config([*base, "seed=1", *OTHER[algo]])],
                          [tmp_path / "m0", tmp_path / "m1"])
    assert [s["status"] for s in summaries] == ["ok", "ok"]

    def lines(d):
        return [{k: v for k, v in x.items() if k not in WALL_CLOCK}
                for x in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]

    plain, member, other = lines(tmp_path / "plain"), lines(tmp_path / "m0"), lines(tmp_path / "m1")
    assert len(plain) == len(member) >= 6
    for x, y in zip(plain, member, strict=True):
        assert x.keys() == y.keys()
        for key, value in x.items():
            if isinstance(value, float):
                assert y[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            else:
                assert y[key] == value, key
    assert any(x != y for x, y in zip(plain, other, strict=False))  # member 1 learned something else
    wa = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt", with_buffer=False)["algo"]
    wb = load_checkpoint(tmp_path / "m0" / "checkpoints" / "last.pt", with_buffer=False)["algo"]
    assert wa.keys() == wb.keys()
    for name in wa:
        for a, c in zip(flat_tensors(wa[name]), flat_tensors(wb[name]), strict=True):
            torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6, msg=name)
