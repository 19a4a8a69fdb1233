"""Population-based training in one process (issue 25): an exploit is a row copy, explore stays in bounds,
a resumed PBT population makes the same decisions as an uninterrupted one, bad settings are one line."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from rlx.config.compose import compose_config
from rlx.config.schema import PBTConfig
from rlx.errors import UserError
from rlx.rundir.checkpoint import load_checkpoint
from rlx.train.driver import resume_at, train_job
from rlx.train.pbt import check_pbt, copy_member_rows, explore, read_lineage
from tests.conftest import run_cli
from tests.unit.test_one_driver import PPO, _assert_same_weights, _cfg, _lines

LRS = (1e-4, 3e-4, 1e-3, 3e-3)
PBT = ["pbt.enabled=true", "pbt.interval=512", "algo.anneal_lr=false", "algo.anneal_clip=false", "logger.every=128"]


def _members(total: int, *extra: str) -> list:
    return [_cfg(*PPO, *PBT, *extra, f"total_steps={total}", f"seed={k}", f"algo.lr={lr}") for k, lr in enumerate(LRS)]


def test_copy_member_rows_copies_member_rows_only_and_keeps_each_members_streams():
    state = {"w": torch.arange(12.0).reshape(4, 3), "scalar": torch.tensor(5.0), "n": 7,
             "random": {"keys": torch.arange(4)}, "nested": [torch.arange(4.0)]}
    out = copy_member_rows(state, [0], [3], 4)
    assert torch.equal(out["w"][3], state["w"][0]) and torch.equal(out["w"][:3], state["w"][:3])
    assert torch.equal(out["nested"][0], torch.tensor([0.0, 1, 2, 0]))
    assert out["random"] is state["random"] and out["n"] == 7 and torch.equal(state["w"][3], torch.tensor([9.0, 10, 11]))


def test_an_exploit_makes_a_member_its_source_and_leaves_the_others_untouched(tmp_path):
    """After training a little, round 1 with member 3 scored worst and member 0 best: every [K, ...] row of
    member 3's weights, Adam moments, observation statistics and hyperparameters equals member 0's (then its
    explored hyperparameters differ), members 0-2 are bit-identical, member 3 keeps its random stream."""
    cfgs = _members(256, "algo.normalize_obs=true", "pbt.interval=256")
    train_job(cfgs, [tmp_path / f"m{k}" for k in range(4)])
    from rlx.members import stack_states
    from rlx.train.pbt import PopulationBasedTraining
    from rlx.train.run import build_algorithm, parse_settings, prepare_process

    settings = [parse_settings(c) for c in cfgs]
    _, spec = prepare_process(settings[0])
    algo = build_algorithm(settings, spec, torch.device("cpu"))
    algo.load_state_dict(stack_states([load_checkpoint(tmp_path / f"m{k}" / "checkpoints" / "last.pt")["algo"]
                                       for k in range(4)]))
    before = algo.state_dict()

    class _Session:
        env_steps, total_steps, recent_evals = 256, 512, [0.0]

        class logger:
            @staticmethod
            def log(line):
                pass

            @staticmethod
            def message(text):
                pass

    pbt = PopulationBasedTraining(settings[0].pbt, {"algo.lr": (1e-5, 1e-2)}, algo, algo.members, [_Session()] * 4,
                                  [tmp_path / f"m{k}" for k in range(4)], seed=0)
    (exploit,) = pbt.run_round(1, 256, {0: 100.0, 1: 50.0, 2: 40.0, 3: 10.0})
    assert exploit["member"] == "m3" and exploit["from"] == "m0"
    after = algo.state_dict()

    def rows(state, k):
        out = {}

        def walk(x, path):
            if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] == 4:
                out[path] = x[k].clone()
            elif isinstance(x, dict):
                for key, v in x.items():
                    walk(v, f"{path}.{key}")
            elif isinstance(x, (list, tuple)):
                for i, v in enumerate(x):
                    walk(v, f"{path}[{i}]")
        walk(state, "")
        return out

    assert algo.members.pbt_rounds.tolist() == [1, 1, 1, 1]  # the round count: every member's
    for state in (before, after):
        del state["hypers"]["pbt_rounds"]
    src, dst = rows(before, 0), rows(after, 3)
    assert any("normalizer" in p for p in src) and any("optimizer" in p for p in src)
    for path, value in src.items():
        if path.startswith(".random"):
            assert torch.equal(dst[path], rows(before, 3)[path]), path  # its own stream
        elif path == ".hypers.values.lr":
            assert float(dst[path]) == pytest.approx(exploit["after"]["algo.lr"]) and 1e-5 <= float(dst[path]) <= 1e-2
        else:
            assert torch.equal(dst[path], value), path
    for k in range(3):
        for path, value in rows(before, k).items():
            assert torch.equal(rows(after, k)[path], value), (k, path)
    assert read_lineage(tmp_path)[-1]["exploits"][0]["copied"]["algo.lr"] == pytest.approx(LRS[0])
    pbt.cfg = dataclasses.replace(pbt.cfg, quantile=0.5)  # the bottom two copy the top two: both recorded
    exploits = pbt.run_round(2, 512, {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0})
    assert sorted(e["member"] for e in exploits) == ["m0", "m1"] and {e["from"] for e in exploits} <= {"m2", "m3"}
    assert read_lineage(tmp_path)[-1]["exploits"] == exploits


def test_explore_stays_within_bounds_and_perturbs_or_resamples():
    rng = np.random.default_rng(0)
    values = [explore(3e-4, 1e-5, 1e-3, rng, 0.25, [0.8, 1.2]) for _ in range(2000)]
    assert all(1e-5 <= v <= 1e-3 for v in values)
    perturbed = sum(v in (pytest.approx(2.4e-4), pytest.approx(3.6e-4)) for v in values)
    assert 0.65 < perturbed / len(values) < 0.85  # 1 - resample_probability, give or take sampling noise
    assert explore(0.9, 0.1, 1.0, np.random.default_rng(1), 0.0, [1.2]) == 1.0  # clipped at the top


@pytest.mark.parametrize("stop_at", [768, 1024], ids=["between-rounds", "at-a-round"])
def test_a_stopped_and_resumed_pbt_population_makes_the_same_decisions(stop_at, tmp_path, monkeypatch):
    from rlx.train.session import Session

    straight = [tmp_path / "straight" / f"m{k}" for k in range(4)]
    stopped = [tmp_path / "stopped" / f"m{k}" for k in range(4)]
    train_job(_members(2048), straight)
    original = Session.add_steps

    def add_steps(self, n):
        original(self, n)
        if self.env_steps == stop_at:
            self.stop_requested = "SIGTERM"

    monkeypatch.setattr(Session, "add_steps", add_steps)
    summaries = train_job(_members(2048), stopped)
    monkeypatch.setattr(Session, "add_steps", original)
    assert {s["status"] for s in summaries} == {"stopped"} and summaries[0]["env_steps"] == stop_at
    resume_at(tmp_path / "stopped")
    lineage = read_lineage(tmp_path / "straight")
    assert [r["round"] for r in lineage] == [1, 2, 3] and any(r["exploits"] for r in lineage)
    assert read_lineage(tmp_path / "stopped") == lineage
    for a, b in zip(straight, stopped, strict=True):
        assert _lines(a, training_only=True) == _lines(b, training_only=True)
        _assert_same_weights(a, b)


def test_each_member_logs_its_hyperparameters_per_round(tmp_path):
    dirs = [tmp_path / f"m{k}" for k in range(4)]
    train_job(_members(1024), dirs)
    lines = [json.loads(x) for x in (dirs[0] / "metrics.jsonl").read_text().splitlines()]
    rounds = [x for x in lines if "pbt_round" in x]
    assert [x["pbt_round"] for x in rounds] == [0, 1] and rounds[0]["hp/algo.lr"] == pytest.approx(LRS[0])
    assert load_checkpoint(dirs[0] / "checkpoints" / "last.pt")["algo"]["hypers"]["pbt_rounds"].tolist() == [1]


@pytest.mark.parametrize("change,message", [
    ({"interval": 300}, "pbt.interval=300: must be a multiple of eval.every=256"),
    ({"keys": ["algo.n_epochs"]}, "pbt.keys: algo.n_epochs cannot mutate; mutable for ppo: algo.lr"),
    ({"bounds": {"algo.lr": [1e-3, 1e-2]}}, "pbt.bounds.algo.lr=[0.001, 0.01] excludes member 0's initial value algo.lr=0.0001"),
    ({"bounds": {"algo.gamma": [0.9, 0.99]}}, "pbt.bounds.algo.gamma: not a mutating key (algo.lr)"),
    ({"ready_evals": 3}, "pbt.interval=512 is shorter than pbt.ready_evals=3 evals"),
])
def test_bad_pbt_settings_are_one_line(change, message):
    cfg = PBTConfig(**{**dict(interval=512), **change})
    with pytest.raises(UserError) as e:
        check_pbt(cfg, "ppo", [compose_config([*PPO, f"algo.lr={lr}"]) for lr in LRS], 256)
    assert str(e.value).startswith(message), str(e.value)


def test_pbt_needs_members_that_differ_and_a_population(tmp_path):
    with pytest.raises(UserError, match="at least 2 members"):
        check_pbt(PBTConfig(interval=512), "ppo", [compose_config(PPO)], 256)
    with pytest.raises(UserError, match="nothing to mutate"):
        check_pbt(PBTConfig(interval=512), "ppo", [compose_config([*PPO, f"seed={s}"]) for s in (0, 1)], 256)
    with pytest.raises(UserError, match="no member dimension"):
        check_pbt(PBTConfig(interval=512), "a3c", [compose_config(["algo=a3c"])] * 2, 256)


def test_rlx_train_with_pbt_is_refused_in_one_line_before_anything_is_written(tmp_path):
    r = run_cli("train", "pbt.enabled=true", "logger.wandb.mode=disabled", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pbt.enabled=true needs a population of at least 2 members" in lines[0], r.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_report_names_the_winner_and_its_line_and_the_schedule_replays_as_a_plain_run(tmp_path):
    from rlx.analysis.lineage import lineage_markdown, lineages
    from rlx.train.driver import train

    dirs = [tmp_path / "sweep" / f"m{k}" for k in range(4)]
    summaries = train_job(_members(2048), dirs)
    (p,) = lineages(tmp_path / "sweep")
    finals = [s["eval_return_mean"] for s in summaries]
    assert p.winner == f"m{finals.index(max(finals))}" and p.rounds == 3
    rounds = read_lineage(tmp_path / "sweep")
    for r, step, member, src in p.ancestry:  # each link is an exploit the lineage file records
        assert {"member": member, "from": src} .items() <= next(
            e for e in rounds[r - 1]["exploits"] if e["member"] == member).items() and step == rounds[r - 1]["env_steps"]
    root = p.schedule[0]["member"]
    assert p.schedule[0]["algo.lr"] == pytest.approx(LRS[int(root[1:])])
    assert "## Population-based training" in lineage_markdown([p]) and f"winner **{p.winner}**" in lineage_markdown([p])
    schedule = json.loads((tmp_path / "sweep" / f"pbt_schedule_{p.winner}.json").read_text())
    assert [x["env_steps"] for x in schedule] == [0, 512, 1024, 1536]

    replay = train(_cfg(*PPO, *PBT[1:], "total_steps=2048", f"algo.lr={LRS[int(root[1:])]}", "logger.every=64",
                        f"pbt.replay={tmp_path / 'sweep' / f'pbt_schedule_{p.winner}.json'}"), tmp_path / "replay")
    assert replay["status"] == "ok"
    lines = [json.loads(x) for x in (tmp_path / "replay" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    for entry, following in zip(schedule, schedule[1:] + [{"env_steps": 2048}], strict=True):
        used = {round(x["lr"], 9) for x in lines if entry["env_steps"] < x["env_steps"] <= following["env_steps"]}
        assert used == {round(float(np.float32(entry["algo.lr"])), 9)}, (entry, used)


def test_a_bad_replay_schedule_is_one_line(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps([{"env_steps": 0, "algo.n_epochs": 3}]))
    r = run_cli("train", f"pbt.replay={bad}", "logger.wandb.mode=disabled", cwd=tmp_path)
    assert r.returncode == 2 and "algo.n_epochs cannot change during a run of algo=ppo" in r.stderr, r.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_member_that_fails_is_replaced_by_an_exploit_and_trains_on(tmp_path, monkeypatch):
    """A NaN member (its loss poisoned once, at update 3) fails, is replaced at the next round by a copy of
    a top member, trains its whole budget and says so in its summary; the lineage marks the exploit."""
    from rlx.algos.ppo import PPO as PPOAlgorithm

    original = PPOAlgorithm.update

    def poisoned(self, rollout, progress):
        metrics = original(self, rollout, progress)
        if self.updates == 3:
            metrics[2]["policy_loss"] = float("nan")
        return metrics

    monkeypatch.setattr(PPOAlgorithm, "update", poisoned)
    dirs = [tmp_path / f"m{k}" for k in range(4)]
    summaries = train_job(_members(2048), dirs)
    revived = summaries[2]
    assert revived["status"] == "ok" and revived["env_steps"] == 2048, revived
    (note,) = revived["pbt_revived"]
    assert note["pbt_round"] == 1 and "non-finite policy_loss" in note["error"] and note["from"] in ("m0", "m1", "m3")
    first = read_lineage(tmp_path)[0]
    assert {"member": "m2", "from": note["from"], "failed": True}.items() <= first["exploits"][0].items()
    assert json.loads((dirs[2] / "summary.json").read_text())["status"] == "ok"
