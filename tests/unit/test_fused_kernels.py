"""``fused_kernels=true|false`` (top level): the switch that turns rlx's hand-written CPU kernels off
(rlx/networks/fused.py and stacked.py: one autograd node per MLP, tanh as 2 sigmoid(2z) - 1, transposed
products for narrow outputs). Off, the networks are plain torch ops, exactly; on, the same functions to float
rounding, and a run trains the same to float rounding either way."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rlx.config.compose import compose_config
from rlx.errors import UserError
from rlx.networks.fused import activate_, fused_kernels, set_fused_kernels
from rlx.networks.mlp import mlp
from rlx.networks.stacked import StackedMLP, _narrow_output
from rlx.train.driver import train
from rlx.train.run import RESUMABLE_KEYS, parse_settings, prepare_process

QUIET = ["logger.progress=false", "logger.wandb.mode=disabled", "logger.tensorboard=false", "torch_threads=1",
         "checkpoint.every=0"]


@pytest.fixture(autouse=True)
def _default_kernels():
    """The setting is process-wide: every test here leaves it as a fresh process has it."""
    yield
    set_fused_kernels(True)


def _plain_stack(stack: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    """The stack as plain torch ops: baddbmm and torch.tanh per layer."""
    h = x
    for i, (w, b) in enumerate(zip(stack.weights, stack.biases, strict=True)):
        h = torch.baddbmm(b, h, w)
        if i < len(stack.weights) - 1:
            h = torch.tanh(h)
    return h


def _nodes(t: torch.Tensor) -> set[str]:
    """The names of the autograd nodes behind ``t``."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in seen:
            seen.add(type(node).__name__)
            todo += [n for n, _ in node.next_functions]
    return seen


def _grads(module: nn.Module, out: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    module.zero_grad()
    (out * weight).sum().backward()
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("out_dim", [2, 1])
def test_off_a_population_stack_is_exactly_plain_torch_ops(out_dim):
    """K=3 heads at a minibatch's size (where every trick applies when on: the sigmoid tanh, the narrow
    transposed product and the one autograd node): off, the forward and every gradient are bit for bit
    those of baddbmm + torch.tanh; on, the same to float rounding, through one node."""
    torch.manual_seed(0)
    stack = StackedMLP(4, out_dim, [64, 64], "tanh", 3)
    x, weight = torch.randn(3, 256, 4), torch.randn(3, 256, out_dim)
    want = _plain_stack(stack, x)
    want_grads = _grads(stack, want, weight)
    h, w = torch.randn(3, 256, 64), torch.randn(3, 64, out_dim)

    assert fused_kernels() and _narrow_output(h, w)
    on = stack(x)
    assert "_StackedMLPFunctionBackward" in _nodes(on)
    torch.testing.assert_close(on, want, rtol=1e-5, atol=1e-6)
    for g, e in zip(_grads(stack, on, weight), want_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)

    set_fused_kernels(False)
    assert not _narrow_output(h, w)
    off = stack(x)
    assert "_StackedMLPFunctionBackward" not in _nodes(off) and "TanhBackward0" in _nodes(off)
    assert torch.equal(off, want)
    for g, e in zip(_grads(stack, off, weight), want_grads, strict=True):
        assert torch.equal(g, e)
    with torch.no_grad():
        assert torch.equal(stack(x), want)


def test_off_a_plain_mlp_is_its_sequential_and_tanh_is_torch_tanh():
    torch.manual_seed(1)
    net = mlp(4, 2, [64, 64], "tanh")
    ref = nn.Sequential(*net)  # the same modules, op by op
    x = torch.randn(256, 4)
    assert "FusedMLPBackward" in _nodes(net(x))
    set_fused_kernels(False)
    out = net(x)
    assert "FusedMLPBackward" not in _nodes(out) and "TanhBackward0" in _nodes(out)
    torch.testing.assert_close(out, ref(x), rtol=0, atol=1e-7)
    z = torch.linspace(-5, 5, 256 * 64).reshape(256, 64)  # above the sigmoid form's size threshold
    assert torch.equal(activate_(z.clone(), "tanh"), torch.tanh(z))


def test_the_setting_is_checked_applied_at_the_jobs_start_and_may_change_on_resume():
    assert parse_settings(compose_config(["algo=ppo"])).run.fused_kernels is True
    with pytest.raises(UserError, match="fused_kernels"):
        parse_settings(compose_config(["algo=ppo", "fused_kernels=maybe"]))
    prepare_process(parse_settings(compose_config(["algo=ppo", "fused_kernels=false"])))
    assert not fused_kernels()
    prepare_process(parse_settings(compose_config(["algo=ppo"])))
    assert fused_kernels()
    assert "fused_kernels" in RESUMABLE_KEYS  # it changes float rounding only, as compile does


def test_a_run_trains_the_same_to_float_rounding_with_the_kernels_off(tmp_path):
    """Two PPO updates (two rollouts, 4 epochs each) on CartPole: every logged loss within float tolerance."""
    cfg = ["algo=ppo", "env=cartpole", "algo.n_steps=64", "algo.batch_size=64", "algo.n_epochs=4", "env.num_envs=2",
           "total_steps=256", "eval.every=0", "eval.episodes=1", *QUIET]
    train(compose_config(cfg), tmp_path / "on")
    train(compose_config([*cfg, "fused_kernels=false"]), tmp_path / "off")

    def losses(run: str) -> list[dict]:
        lines = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in x.items() if "loss" in k} for x in lines if "updates" in x]

    on, off = losses("on"), losses("off")
    assert len(on) == len(off) > 0 and all(on)
    for a, b in zip(on, off, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
