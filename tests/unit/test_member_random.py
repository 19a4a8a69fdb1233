"""Per-member random streams (issue 22): member k's draws are its own, whoever shares its population."""
from __future__ import annotations

import json

import numpy as np
import torch

from rlx.members import MemberRandom, mix32, mix32_int

CPU = torch.device("cpu")


def _lowbias32_numpy(x: np.ndarray) -> np.ndarray:
    """The reference: lowbias32 in NumPy's wrapping uint32 arithmetic."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def test_mix32_is_lowbias32_on_uint32():
    x = np.random.default_rng(0).integers(0, 2**32, 10_000, dtype=np.uint64)
    x[:4] = [0, 1, 2**32 - 1, 0x9E3779B9]
    expected = _lowbias32_numpy(x)
    assert (mix32(torch.from_numpy(x.astype(np.int64))).numpy() == expected.astype(np.int64)).all()
    assert [mix32_int(int(v)) for v in x[:100]] == expected[:100].astype(np.int64).tolist()


def test_a_members_stream_does_not_depend_on_its_neighbours_or_their_draws():
    alone = MemberRandom([7], CPU)
    together = MemberRandom([3, 7, 11], CPU)
    for n in (5, 8192, 100, 9000, 3):  # within the cache, across refills, and larger than it
        advance = torch.tensor([n % 2 == 0, True, False])  # the others advance unevenly
        torch.testing.assert_close(together.uniform(n, advance)[1], alone.uniform(n)[0], rtol=0, atol=0)
    a, b = MemberRandom([5], CPU), MemberRandom([5], CPU)
    assert not torch.equal(MemberRandom([5], CPU, stream=1).uniform(64), a.uniform(64))  # streams differ
    b.load_state_dict(a.state_dict())  # positions are the state: a restored stream continues exactly
    torch.testing.assert_close(a.uniform(50), b.uniform(50), rtol=0, atol=0)


def test_a_member_that_does_not_advance_sees_the_same_values_again():
    r = MemberRandom([1, 2], CPU)
    first = r.uniform(10, torch.tensor([False, True]))
    second = r.uniform(10)
    assert torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])


def test_distributions_match_torch():
    """Uniform, normal and Gumbel-max categorical draws against torch's own distributions (moments and
    frequencies within a few standard errors of 200k draws)."""
    r = MemberRandom([0, 1], CPU)
    u = r.uniform(200_000)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.003 and abs(float(u.var()) - 1 / 12) < 0.002
    z = r.normal_like(torch.empty(2, 200_000))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert abs(float((z.abs() < 1.959964).float().mean()) - 0.95) < 0.003  # the tails too
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0]]).expand(2, 50_000, 4)
    draws = (logits + r.gumbel_like(logits)).argmax(-1)
    freq = torch.bincount(draws.reshape(-1), minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0, 0], -1), atol=0.005, rtol=0)


def test_member_0_of_a_population_acts_as_its_plain_run(tmp_path):
    """PPO CartPole, member 0 of K=4 (other clip_eps and seeds beside it) vs its plain run: the same
    actions, hence the same episodes, for the first 10 updates (measured: 20 updates, 5,120 env steps, on
    this config before batched kernels' float rounding changes an action), and the same losses to float
    rounding."""
    from rlx.config.compose import compose_config
    from rlx.train.driver import train, train_job

    base = ["logger.wandb.mode=disabled", "logger.progress=false", "checkpoint.every=0", "eval.every=0",
            "eval.episodes=2", "algo=ppo", "env=cartpole", "total_steps=2560", "logger.every=256"]
    members = [[f"algo.clip_eps={eps}", f"seed={seed}"] for eps, seed in ((0.2, 0), (0.1, 1), (0.3, 2), (0.25, 3))]
    train(compose_config([*base, *members[0]]), tmp_path / "plain")
    train_job([compose_config([*base, *m]) for m in members], [tmp_path / f"m{i}" for i in range(4)])

    def lines(d):
        return [x for x in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "updates" in x]

    plain, member = lines(tmp_path / "plain"), lines(tmp_path / "m0")
    assert len(plain) == len(member) == 10
    for x, y in zip(plain, member, strict=True):
        assert (x["episodes"], x["episode_return_mean"], x["updates"]) == (y["episodes"], y["episode_return_mean"], y["updates"])
        for key in ("policy_loss", "value_loss", "entropy"):
            assert abs(x[key] - y[key]) <= 1e-4 * max(1.0, abs(x[key])), key
