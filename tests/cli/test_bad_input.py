"""Bad input: one line naming the key/value and what is allowed, exit code 2, no traceback."""
import pytest

from tests.conftest import run_cli

CASES = [
    (["train", "algo=nope"], "algo=nope is not an option"),
    (["train", "algo.clip_esp=0.1"], "did you mean 'algo.clip_eps'"),
    (["train", "algo.lr=abc"], "algo.lr='abc': expected float"),
    (["train", "algo.clip_eps=0"], "algo.clip_eps=0"),
    (["train", "algo.gamma=1.5"], "allowed [0, 1]"),
    (["train", "algo.gae_lambda=2"], "allowed [0, 1]"),
    (["train", "total_steps=0"], "total_steps=0"),
    (["train", "env.id=NoSuchEnv-v0"], "gymnasium doesn't know"),
    (["train", "env.id=CartPol-v1"], "Did you mean: CartPole-v1"),
    (["train", "device=tpu"], "device='tpu'"),
    (["train", "-m", "algo.clip_eps=0.1,-1"], "algo.clip_eps=-1"),
]


@pytest.mark.parametrize("args, fragment", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_train_input(args, fragment, tmp_path):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_eval_missing_checkpoint(tmp_path):
    r = run_cli("eval", str(tmp_path / "nope.pt"), cwd=tmp_path)
    assert r.returncode == 2 and "no such checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_eval_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"this is not a checkpoint")
    r = run_cli("eval", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "not a readable rlx checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_eval_empty_run_dir(tmp_path):
    r = run_cli("eval", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "no checkpoints" in r.stderr
