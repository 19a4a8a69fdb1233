"""compile=true (issue 27): the torch.compile'd update step of SAC and TD3 (DDPG's step is TD3's without the
smoothing) matches the eager step to float tolerance over hundreds of updates, compiles once per variant,
and the setting is validated and resolved in one place. Exact resume with compile on:
tests/unit/test_one_driver.py; the population equivalence: tests/unit/test_population_offpolicy.py."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo

from rlx.algos.compiled import UpdateStep, compile_enabled, set_compile
from rlx.buffers.replay import Transitions
from rlx.config.compose import compose_config
from rlx.errors import UserError
from rlx.train.run import build_algorithm, parse_settings, prepare_process
from tests.unit.test_population_offpolicy import flat_tensors

# tests/unit/test_one_driver.py's SAC population (its compile=true resume compiles the same graph: the
# inductor cache serves it)
SAC = ["algo=sac", "env=pendulum", "algo.learning_starts=50", "algo.batch_size=32", "network.hidden_sizes=[16]",
       "env.num_envs=2"]
TD3 = ["algo=td3", "env=pendulum", "algo.batch_size=32", "network.hidden_sizes=[16]"]


def _algo(overrides: list[str], compile_: bool):
    settings = [parse_settings(compose_config([*overrides, f"seed={seed}", f"compile={str(compile_).lower()}"]))
                for seed in (1, 2)]
    device, spec = prepare_process(settings[0])
    return build_algorithm(settings, spec, device)


def _batch(step: int, b: int = 32) -> Transitions:
    g = torch.Generator().manual_seed(step)
    return Transitions(obs=torch.randn(2, b, 3, generator=g), actions=torch.rand(2, b, 1, generator=g) * 4 - 2,
                       rewards=torch.randn(2, b, generator=g), next_obs=torch.randn(2, b, 3, generator=g),
                       terminated=(torch.rand(2, b, generator=g) < 0.1).float())


@pytest.mark.parametrize("overrides,backend,variants", [(SAC, "inductor", 1), (TD3, "aot_eager", 2)], ids=["sac", "td3"])
def test_a_compiled_update_matches_the_eager_one_and_compiles_once(overrides, backend, variants, monkeypatch):
    """A K=2 population, 300 updates on the same batches: every weight, target, Adam moment and metric
    within float tolerance of compile=false; after the first update of each variant (TD3: critic-only and
    critic+actor), no recompilation. TD3 traces with the aot_eager backend (dynamo + AOT autograd: what
    compile changes in the program; inductor's second cold compile would double this test's time)."""
    monkeypatch.setattr(UpdateStep, "backend", backend)
    eager, compiled = _algo(overrides, False), _algo(overrides, True)
    assert not eager.step.enabled and compiled.step.enabled
    torch._dynamo.reset()
    for step in range(300):
        batch = _batch(step)
        with torch._dynamo.config.patch(error_on_recompile=step >= variants):
            got = compiled.update(batch, 0.0)
        want = eager.update(batch, 0.0)
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, rel=1e-3, abs=1e-4), step
    mine, theirs = compiled.state_dict(), eager.state_dict()
    for name in ("actor", "critic", "critic_target", "critic_opt", "actor_opt"):
        flat_a, flat_b = flat_tensors(mine[name]), flat_tensors(theirs[name])
        assert len(flat_a) == len(flat_b) > 0
        for a, b in zip(flat_a, flat_b, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_the_compile_setting_is_checked_and_resolved_in_one_place():
    assert parse_settings(compose_config(SAC)).run.compile == "auto"  # config.yaml's null: the schema's default
    assert parse_settings(compose_config([*SAC, "compile=false"])).run.compile is False
    with pytest.raises(UserError, match=r"^compile='maybe': expected 'auto' \| True \| False"):
        parse_settings(compose_config([*SAC, "compile=maybe"]))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (compile_enabled("auto", cpu), compile_enabled("auto", cuda)) == (False, True)
    assert compile_enabled(True, cpu) and not compile_enabled(False, cuda)
    ppo = build_algorithm(parse_settings(compose_config(["algo=ppo", "compile=true", "network.hidden_sizes=[8]"])),
                          *reversed(prepare_process(parse_settings(compose_config(["algo=ppo"])))))
    assert not set_compile(ppo, True, cpu)  # an algorithm without a compiled step is left as it is
