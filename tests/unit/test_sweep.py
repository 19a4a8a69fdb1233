"""Sweep plumbing without training: presets compose and validate, sweep values are validated up front,
run_sweep's orchestration (multirun flag, pinned sweep dir, report even when Hydra fails), device pinning."""
import json
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import yaml

from rlx.algos.registry import ALGOS
from rlx.app.sweep import _quote, run_sweep
from rlx.app.validate import validate
from rlx.config.compose import compose_config, group_options, with_sweeper_params
from rlx.config.schema import RunConfig
from rlx.errors import UserError
from rlx.train.run import job_device, resolve_device

PRESETS = {"ppo_clip_eps": ("ppo", "algo.clip_eps"), "gae_lambda": ("ppo", "algo.gae_lambda"),
           "soft_tau": ("sac", "algo.tau"), "sac_alpha": ("sac", "algo.alpha")}


def test_every_preset_is_tested():
    assert set(group_options("sweep")) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_composes_and_every_value_validates(name):
    algo, key = PRESETS[name]
    if algo not in ALGOS:
        pytest.skip(f"algo={algo} is not in the registry yet")
    cfg = compose_config([f"sweep={name}"], return_hydra_config=True)
    assert cfg.algo.name == algo
    params = dict(cfg.hydra.sweeper.params)
    assert set(params) == {key, "seed"} and params["seed"] == "0,1,2"
    assert len(params[key].split(",")) >= 3
    assert name in str(cfg.hydra.sweep.dir)
    validate([f"sweep={name}"])  # composes every swept value: types and ranges checked


def test_sac_alpha_preset_sweeps_auto_and_fixed_values():
    cfg = compose_config(["sweep=sac_alpha"], return_hydra_config=True)
    values = cfg.hydra.sweeper.params["algo.alpha"].split(",")
    assert "auto" in values and any(v != "auto" and float(v) > 0 for v in values)


def test_preset_is_overridable_from_the_command_line():
    cfg = compose_config(["sweep=ppo_clip_eps", "env=acrobot", "total_steps=123"], return_hydra_config=True)
    assert cfg.env.id == "Acrobot-v1" and cfg.total_steps == 123
    # command-line sweeps replace the preset's sweep of the same key; other preset keys stay
    merged = with_sweeper_params(["algo.clip_eps=0.05,0.5"], cfg)
    assert merged == ["seed=0,1,2", "algo.clip_eps=0.05,0.5"]


@pytest.mark.parametrize("overrides, fragments", [
    (["algo=ppo", "algo.tau=0.1,0.2"], ["unknown key 'algo.tau' for algo=ppo"]),
    (["algo.clip_esp=0.1,0.2"], ["'algo.clip_esp' for algo=ppo", "did you mean 'algo.clip_eps'"]),
    (["sweep=soft_tau", "algo=ppo"], ["'algo.tau' for algo=ppo"]),  # the preset's key, the user's algo
    (["sweep=ppo_clip_eps", "algo.clip_eps=0.1,-1"], ["algo.clip_eps=-1", "out of range"]),
    (["sweep=ppo_clip_eps", "seed=0,-1"], ["seed=-1"]),
    (["algo.gae_lambda=range(0.5,2,0.5)"], ["algo.gae_lambda=1.5", "allowed [0, 1]"]),  # 0.5, 1.0, 1.5
    (["algo.clip_eps=interval(0.1,0.3)"], ["interval() needs a sampling sweeper"]),  # grid sweeper: fails early
    (["device=cuda:x"], ["device='cuda:x'"]),
])
def test_bad_sweep_values_are_one_line_errors(overrides, fragments):
    with pytest.raises(UserError) as e:
        validate(overrides)
    assert len(str(e.value).splitlines()) == 1
    for fragment in fragments:
        assert fragment in str(e.value)


def test_names_the_chosen_algorithm_for_keys_of_another():
    if "sac" not in ALGOS:
        pytest.skip("sac is not in the registry yet")
    with pytest.raises(UserError, match=r"unknown key 'algo.clip_eps' for algo=sac"):
        validate(["algo=sac", "env=pendulum", "algo.clip_eps=0.1,0.2"])


LAUNCHERS = {"parallel": ("hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
             "slurm": ("hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
             "ray_cluster": ("hydra_plugins.rlx_ray_launcher", "RayClusterLauncher")}


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_presets_compose(name):
    module, target = LAUNCHERS[name]
    if find_spec("hydra_plugins") is None or find_spec(module) is None:
        with pytest.raises(UserError, match=r"plugin is not installed; pip install 'rlx\["):
            compose_config([f"hydra/launcher={name}"], return_hydra_config=True)
        return
    cfg = compose_config([f"hydra/launcher={name}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


def test_optuna_preset_maximizes():
    if find_spec("hydra_plugins") is None or find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.skip("hydra-optuna-sweeper not installed")
    cfg = compose_config(["hydra/sweeper=optuna_max"], return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.sweeper.sampler.seed == 0


def test_optuna_interval_end_points_are_validated():
    if find_spec("hydra_plugins") is None or find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.skip("hydra-optuna-sweeper not installed")
    validate(["hydra/sweeper=optuna_max", "algo.clip_eps=interval(0.1,0.3)", "algo.lr=tag(log,interval(1e-4,1e-2))"])
    with pytest.raises(UserError, match=r"algo.clip_eps=-1.0: out of range"):
        validate(["hydra/sweeper=optuna_max", "algo.clip_eps=interval(-1,0.3)"])


def test_quote_keeps_a_path_one_plain_value():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for path in ["multirun/2024-01-01_10-00-00", "/tmp/a b,c=d", "it's/here"]:
        (o,) = OverridesParser.create().parse_overrides([f"hydra.sweep.dir={_quote(path)}"])
        assert not o.is_sweep_override() and o.value() == path


def _fake_run(job: Path, clip: str, seed: int, final: float | None) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"algo.clip_eps={clip}", f"seed={seed}"]))
    summary = {"status": "ok", "eval_return_mean": final} if final is not None else {"status": "failed", "error": "boom"}
    (job / "summary.json").write_text(json.dumps(summary))


def test_run_sweep_forces_multirun_pins_the_dir_and_reports_even_when_hydra_exits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_hydra(args):
        calls.append(args)
        sweep = Path(args[-1].split("=", 1)[1].strip("'"))
        _fake_run(sweep / "0", "0.1", 0, 100.0)
        _fake_run(sweep / "1", "0.2", 0, 200.0)
        raise SystemExit(1)  # e.g. the launcher died after these runs

    with pytest.raises(SystemExit) as e:
        run_sweep(["algo.clip_eps=0.1,0.2"], validate_fn=lambda a: None, hydra_fn=fake_hydra)
    assert e.value.code == 1
    (args,) = calls
    assert args[0] == "--multirun" and args[-1].startswith("hydra.sweep.dir='multirun/")
    (sweep,) = list((tmp_path / "multirun").iterdir())
    assert (sweep / "report.md").is_file() and "algo.clip_eps=0.2" in (sweep / "report.md").read_text().split("\n")[2]
    assert "Sweep report" in capsys.readouterr().out


def test_run_sweep_exit_status(tmp_path):
    def hydra_with(finals):
        def fake(args):
            sweep = Path(args[-1].split("=", 1)[1].strip("'"))
            for i, final in enumerate(finals):
                _fake_run(sweep / str(i), "0.1", i, final)
        return fake

    given = str(tmp_path / "given")
    run_sweep(["-m", f"hydra.sweep.dir={given}"], lambda a: None, hydra_with([1.0, None]))  # some failed: 0
    assert (tmp_path / "given" / "report.csv").is_file()
    with pytest.raises(SystemExit) as e:  # every run failed: 1
        run_sweep([f"hydra.sweep.dir={tmp_path / 'all_failed'}"], lambda a: None, hydra_with([None, None]))
    assert e.value.code == 1


def test_run_sweep_passes_print_flags_through_without_a_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    run_sweep(["--cfg", "hydra", "hydra/launcher=parallel"], lambda a: None, calls.append)
    assert calls == [["--cfg", "hydra", "hydra/launcher=parallel"]] and not (tmp_path / "multirun").exists()


def test_device_strings():
    assert RunConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(UserError, match="expected 'auto' | 'cpu' | 'cuda' | 'cuda:N'"):
        RunConfig(device="gpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_device_index_is_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="device=cuda:0: no CUDA device"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_multirun_jobs_spread_over_gpus_round_robin():
    assert [job_device("auto", k, 2) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert job_device("auto", 3, 1) == "auto" and job_device("auto", 3, 0) == "auto"  # one GPU / CPU only
    assert job_device("cpu", 3, 4) == "cpu" and job_device("cuda:2", 0, 4) == "cuda:2"  # explicit choice wins


def test_report_ties_at_the_ceiling_are_broken_by_auc():
    from rlx.analysis.report import ConfigRow, compare_top

    def row(name, auc):
        return ConfigRow(config={"x": name}, n_seeds=3, n_failed=0, errors=[], mean=500.0, iqm=500.0, ci_low=500.0,
                         ci_high=500.0, auc_mean=auc, sps_mean=1.0, config_key=name, finals=[500.0] * 3)

    v = compare_top([row("slow", 400.0), row("fast", 450.0)])
    assert v.best.config == {"x": "fast"} and "tied on final return, ranked by AUC" in v.text


def test_report_unescapes_swept_values():
    from rlx.analysis.report import parse_override

    assert parse_override(r"env.id=my_envs\:Crash") == ("env.id", "my_envs:Crash")  # Hydra escapes ':' in sweeps
    assert parse_override(r"+x=C:\dir") == ("x", r"C:\dir")  # backslashes before ordinary chars stay
