"""`rlx demo advantage` and `rlx demo multimodal` end to end (the installed CLI, --json)."""
from __future__ import annotations

import json

import pytest

NOTES = {"V": 0.5, "Q_left": 1.0, "Q_right": 0.0, "A_left": 0.5, "A_right": -0.5}


def test_demo_advantage_matches_the_notes_and_learns_to_shoot_left(cli, tmp_path):
    r = cli("demo", "advantage", "--json", "--out", str(tmp_path / "adv"), "--updates", "100")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key, value in NOTES.items():
        assert abs(out[key] - value) <= 0.05, (key, out[key])
    assert out["A_left"] == pytest.approx(out["Q_left"] - out["V"]) and out["A_right"] == pytest.approx(out["Q_right"] - out["V"])
    assert out["pi_left_start"] == pytest.approx(0.5, abs=0.05) and out["pi_left_end"] > 0.9
    assert (tmp_path / "adv" / "advantage.png").stat().st_size > 0


def test_demo_advantage_bad_input_is_one_line_exit_2(cli, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    r = cli("demo", "advantage", "--out", str(tmp_path / "used"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--out" in r.stderr


def test_demo_multimodal_bad_alpha_is_one_line_exit_2(cli, tmp_path):
    r = cli("demo", "multimodal", "--alpha", "0", "--out", str(tmp_path / "mm"))
    assert r.returncode == 2 and "--alpha" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "mm").exists()


@pytest.mark.slow
def test_demo_multimodal_ddpg_commits_discrete_sac_keeps_both(cli, tmp_path):
    # measured, seeds 0/1/2 (--steps 1500, alpha 0.2): see README "Demos from the notes"
    r = cli("demo", "multimodal", "--json", "--seed", "0", "--out", str(tmp_path / "mm"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["algorithms"]
    for res in out.values():
        assert sum(res["passage_share"]) == pytest.approx(1.0)
    assert max(out["ddpg"]["passage_share"]) >= 0.95
    assert min(out["sac_discrete"]["passage_share"]) >= 0.20
    assert (tmp_path / "mm" / "multimodal.png").stat().st_size > 0


def test_penalty_shootout_env_scores_only_to_the_left():
    from rlx.demos.envs import LEFT, RIGHT, PenaltyShootout

    env = PenaltyShootout()
    env.reset(seed=0)
    assert env.step(LEFT)[1:4] == (1.0, True, False)
    env.reset()
    assert env.step(RIGHT)[1:4] == (0.0, True, False)


def test_two_passages_reward_is_bimodal_and_headings_pick_passages():
    import numpy as np

    from rlx.demos.envs import TwoPassages, TwoPassagesDiscrete, passage, two_passages_reward

    assert two_passages_reward(-0.5) == pytest.approx(1.0, abs=1e-6)
    assert two_passages_reward(0.5) == pytest.approx(0.8, abs=1e-6)
    assert two_passages_reward(0.0) < 0.01  # the valley between the passages
    assert passage(np.array([-0.3, 0.0, 0.7])).tolist() == [0, 1, 1]
    env = TwoPassages()
    env.reset(seed=0)
    _, r, term, _, info = env.step(np.array([-0.5], np.float32))
    assert r == pytest.approx(1.0, abs=1e-6) and term and info["passage"] == 0
    d = TwoPassagesDiscrete(21)
    assert d.headings[5] == pytest.approx(-0.5) and d.step(15)[4]["passage"] == 1


def test_boltzmann_target_and_passage_mass_by_hand():
    import math

    import numpy as np

    from rlx.demos.multimodal import boltzmann, passage_mass

    q = np.array([1.0, 0.0, 0.8])
    p = boltzmann(q, 0.2)
    z = math.exp(5) + 1 + math.exp(4)
    assert p.tolist() == pytest.approx([math.exp(5) / z, 1 / z, math.exp(4) / z])
    assert passage_mass(np.array([-0.5, 0.0, 0.5]), p) == pytest.approx([math.exp(5) / z, (1 + math.exp(4)) / z])
