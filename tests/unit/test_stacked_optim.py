"""The stacked population pieces against K separate torch runs: StackedMLP vs K nn.Sequential MLPs, and
StackedAdam / StackedRMSprop + per-member clipping vs K torch.optim optimizers + clip_grad_norm_."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from rlx.networks.stacked import StackedMLP
from rlx.optim.stacked import StackedAdam, StackedRMSprop, clip_grad_norm_stacked_, gather_stacked_grads, stack_parameters

K, IN, OUT, B = 3, 5, 2, 16


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add synchronization (seconds per test on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_mlps(seed: int = 0, activation=nn.Tanh) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Linear(IN, 8), activation(), nn.Linear(8, 8), activation(), nn.Linear(8, OUT)) for _ in range(K)]


def flat_member(net: nn.Module) -> torch.Tensor:
    """Member params in the stack's row order (StackedMLP.parameters(): every layer's weight, transposed to
    [in, out], then every layer's bias)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    return torch.cat([lin.weight.detach().t().reshape(-1) for lin in linears] + [lin.bias.detach().reshape(-1) for lin in linears])


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_stacked_mlp_matches_separate_mlps(activation):
    mlps = make_mlps(activation=activation)
    stack = StackedMLP.from_mlps(mlps)
    x = torch.randn(K, B, IN)
    x_ref, x_st = x.clone().requires_grad_(), x.clone().requires_grad_()
    refs = torch.stack([m(x_ref[k]) for k, m in enumerate(mlps)])
    out = stack(x_st)
    torch.testing.assert_close(out, refs, rtol=0, atol=1e-6)
    w = torch.randn_like(out)  # a different loss weight per output, so every gradient is distinct
    (refs * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x_st.grad, x_ref.grad, rtol=0, atol=1e-6)
    for k, m in enumerate(mlps):
        linears = [lin for lin in m if isinstance(lin, nn.Linear)]
        for i, lin in enumerate(linears):
            torch.testing.assert_close(stack.weights[i].grad[k], lin.weight.grad.t(), rtol=0, atol=1e-6)
            torch.testing.assert_close(stack.biases[i].grad[k, 0], lin.bias.grad, rtol=0, atol=1e-6)
        back = copy.deepcopy(m)
        back.load_state_dict(stack.member_state_dict(k))
        torch.testing.assert_close(flat_member(back), flat_member(m), rtol=0, atol=0)


def test_stacked_mlp_large_batch_tanh_path_and_double_backward():
    """Large enough for the sigmoid form of tanh on CPU, the whole stack one autograd node; under
    double_backward() the plain ops, whose gradient can be differentiated again."""
    from rlx.networks.fused import double_backward

    mlps = make_mlps(3)
    stack = StackedMLP.from_mlps(mlps)
    x = torch.randn(K, 256, IN)
    out = stack(x)
    assert type(out.grad_fn).__name__ == "_StackedMLPFunctionBackward"
    refs = torch.stack([m(x[k]) for k, m in enumerate(mlps)])
    torch.testing.assert_close(out, refs, rtol=0, atol=1e-6)
    out.square().sum().backward()
    torch.stack([m(x[k]) for k, m in enumerate(mlps)]).square().sum().backward()
    for i, lin in enumerate([lin for lin in mlps[1] if isinstance(lin, nn.Linear)]):
        torch.testing.assert_close(stack.weights[i].grad[1], lin.weight.grad.t(), rtol=1e-6, atol=1e-6)  # sums of 256
    with double_backward():
        xg = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(stack(xg).square().sum(), xg, create_graph=True)
        g.sum().backward()  # would raise through a once_differentiable node
    assert stack.weights[0].grad is not None


@pytest.mark.parametrize("out_dim", [1, 2, 16])
@pytest.mark.parametrize("members", [1, K])
def test_stacked_mlp_narrow_outputs_and_input_grad(out_dim, members):
    """PPO-sized heads (64 hidden, 1 or 2 outputs, batch 256): the transposed products for narrow outputs
    and the broadcast multiply for one output give K nn.Sequential MLPs' outputs and gradients, input
    gradient included; without gradients (acting) the same outputs."""
    torch.manual_seed(4)
    mlps = [nn.Sequential(nn.Linear(IN, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out_dim))
            for _ in range(members)]
    stack = StackedMLP.from_mlps(mlps)
    x = torch.randn(members, 256, IN)
    x_ref, x_st = x.clone().requires_grad_(), x.clone().requires_grad_()
    refs = torch.stack([m(x_ref[k]) for k, m in enumerate(mlps)])
    out = stack(x_st)
    torch.testing.assert_close(out, refs, rtol=0, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(stack(x), refs.detach(), rtol=0, atol=1e-5)
    w = torch.randn_like(out)
    (refs * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x_st.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    for k, m in enumerate(mlps):
        for i, lin in enumerate([lin for lin in m if isinstance(lin, nn.Linear)]):
            torch.testing.assert_close(stack.weights[i].grad[k], lin.weight.grad.t(), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(stack.biases[i].grad[k, 0], lin.bias.grad, rtol=1e-5, atol=1e-5)


def test_shared_input_and_shape_checks():
    mlps = make_mlps()
    stack = StackedMLP.from_mlps(mlps)
    x = torch.randn(B, IN)
    torch.testing.assert_close(stack(x), torch.stack([m(x) for m in mlps]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        stack(torch.randn(K + 1, B, IN))
    with pytest.raises(ValueError):
        StackedMLP.from_mlps([*mlps[:2], nn.Sequential(nn.Linear(IN, 4), nn.Tanh(), nn.Linear(4, OUT))])


def test_stack_parameters_views_and_grads():
    stack = StackedMLP.from_mlps(make_mlps())
    flat = stack_parameters(list(stack.parameters()))
    for k, m in enumerate(make_mlps()):
        assert torch.equal(flat[k].detach(), flat_member(m))
    assert flat.shape[0] == K and flat.shape[1] == sum(p[0].numel() for p in stack.parameters())
    with torch.no_grad():
        flat[1].zero_()  # a write to the buffer is a write to member 1's parameters, and only its
    assert all(p[1].abs().sum() == 0 and p[0].abs().sum() > 0 for p in stack.parameters())
    out = stack(torch.randn(K, B, IN))
    out.sum().backward()
    grads = [p.grad.clone() for p in stack.parameters()]
    gather_stacked_grads(flat)
    assert all(p.grad is None for p in stack.parameters())
    torch.testing.assert_close(flat.grad, torch.cat([g.reshape(K, -1) for g in grads], dim=1), rtol=0, atol=0)


def test_clip_is_per_member():
    g = torch.randn(K, 50) * torch.tensor([[100.0], [0.01], [3.0]])
    refs = [g[k].clone() for k in range(K)]
    max_norm = torch.tensor([1.0, 1.0, 2.0])
    ref_norms = []
    for k in range(K):
        p = nn.Parameter(torch.zeros(50))
        p.grad = refs[k]
        ref_norms.append(nn.utils.clip_grad_norm_([p], float(max_norm[k])))
    norms = clip_grad_norm_stacked_(g, max_norm)
    torch.testing.assert_close(norms, torch.stack(ref_norms), rtol=1e-6, atol=0)
    torch.testing.assert_close(g, torch.stack(refs), rtol=0, atol=1e-6)
    assert torch.equal(g[1], refs[1])  # below its max_norm: untouched by member 0's huge norm


ADAM = dict(lr=[1e-2, 3e-3, 5e-2], betas=([0.9, 0.8, 0.95], [0.999, 0.99, 0.9]), eps=[1e-8, 1e-5, 1e-3])
RMS = dict(lr=[1e-2, 3e-3, 7e-4], alpha=[0.99, 0.9, 0.95], eps=[1e-8, 1e-5, 1e-3])
# Centered RMSprop with momentum runs in float64: in float32 its member 0 (hard-clipped gradient, eps 1e-8)
# drifts from torch's by up to 4e-6 within 12 steps, because its small denominators amplify last-bit
# differences in the clipped gradient (one norm over the row vs torch's norm of per-tensor norms); in
# float64 the same comparison holds to 1e-6 with a wide margin, so it still checks the update rule.
CASES = [
    ("adam", ADAM, {}, torch.float32),
    ("rmsprop", RMS, {}, torch.float32),
    ("rmsprop", {**RMS, "momentum": [0.9, 0.5, 0.0]}, {"centered": True}, torch.float64),
]


def torch_optimizer(name: str, params, hp: dict, k: int, extra: dict):
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"][k], betas=(hp["betas"][0][k], hp["betas"][1][k]), eps=hp["eps"][k])
    return torch.optim.RMSprop(params, lr=hp["lr"][k], alpha=hp["alpha"][k], eps=hp["eps"][k],
                               momentum=hp.get("momentum", [0.0] * K)[k], **extra)


def stacked_optimizer(name: str, flat, hp: dict, extra: dict):
    if name == "adam":
        return StackedAdam(flat, lr=hp["lr"], betas=hp["betas"], eps=hp["eps"])
    return StackedRMSprop(flat, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"], momentum=hp.get("momentum", 0.0), **extra)


def member_losses(outs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # member 0's loss is scaled up so that its gradient is clipped hard while member 1's is not
    scale = torch.tensor([1e3, 1.0, 10.0]).reshape(K, 1, 1)
    return ((outs - targets) ** 2 * scale).mean(dim=(1, 2))


@pytest.mark.parametrize("name,hp,extra,dtype", CASES, ids=["adam", "rmsprop", "rmsprop-centered-momentum-f64"])
def test_stacked_step_matches_separate_optimizers(name, hp, extra, dtype):
    mlps = [m.to(dtype) for m in make_mlps(1)]
    max_norm = [0.5, 1e6, 2.0]
    ref_opts = [torch_optimizer(name, m.parameters(), hp, k, extra) for k, m in enumerate(mlps)]
    stack = StackedMLP.from_mlps(mlps)
    flat = stack_parameters(list(stack.parameters()))
    opt = stacked_optimizer(name, flat, hp, extra)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(K, B, IN, generator=gen, dtype=dtype), torch.randn(K, B, OUT, generator=gen, dtype=dtype))
               for _ in range(12)]

    def stacked_step(opt, flat, stack, x, y):
        opt.zero_grad()
        member_losses(stack(x), y).sum().backward()  # the sum: each member's gradient is its own loss's
        gather_stacked_grads(flat)
        return clip_grad_norm_stacked_(flat.grad, torch.tensor(max_norm))

    snapshot = None
    for t, (x, y) in enumerate(batches):
        ref_norms = []
        for k, (m, o) in enumerate(zip(mlps, ref_opts, strict=True)):
            o.zero_grad()
            member_losses(torch.stack([m(x[k])] * K), y[k].expand(K, B, OUT))[k].backward()
            ref_norms.append(nn.utils.clip_grad_norm_(m.parameters(), max_norm[k]))
            o.step()
        norms = stacked_step(opt, flat, stack, x, y)
        opt.step()
        torch.testing.assert_close(norms, torch.stack(ref_norms), rtol=1e-5, atol=0)
        for k, m in enumerate(mlps):
            torch.testing.assert_close(flat[k].detach(), flat_member(m), rtol=0, atol=1e-6, msg=f"step {t}, member {k}")
        if t == 5:  # round trip the optimizer through a saved state_dict, into a fresh copy
            buf = io.BytesIO()
            torch.save({"params": flat.detach().clone(), "opt": opt.state_dict()}, buf)
            snapshot = buf.getvalue()
    # the per-member moments equal torch's
    first_state = "exp_avg" if name == "adam" else "square_avg"
    for k, (m, o) in enumerate(zip(mlps, ref_opts, strict=True)):
        linears = [lin for lin in m if isinstance(lin, nn.Linear)]
        ref = torch.cat([o.state[lin.weight][first_state].t().reshape(-1) for lin in linears]
                        + [o.state[lin.bias][first_state].reshape(-1) for lin in linears])
        torch.testing.assert_close(opt.state[first_state][k], ref, rtol=0, atol=1e-6)

    saved = torch.load(io.BytesIO(snapshot))
    stack2 = StackedMLP.from_mlps([m.to(dtype) for m in make_mlps(1)])
    flat2 = stack_parameters(list(stack2.parameters()))
    with torch.no_grad():
        flat2.copy_(saved["params"])
    opt2 = stacked_optimizer(name, flat2, {**hp, "lr": 0.0}, extra)
    opt2.load_state_dict(saved["opt"])  # restores the lr too
    torch.testing.assert_close(opt2.get("lr"), torch.tensor(hp["lr"], dtype=torch.float64))
    for x, y in batches[6:]:
        stacked_step(opt2, flat2, stack2, x, y)
        opt2.step()
    assert torch.equal(flat2, flat)  # resumed == uninterrupted, bit for bit


def test_masked_step_and_per_member_lr_change():
    stack = StackedMLP.from_mlps(make_mlps(2))
    flat = stack_parameters(list(stack.parameters()))
    opt = StackedAdam(flat, lr=1e-2)
    before = flat.detach().clone()
    stack(torch.randn(K, B, IN)).pow(2).sum().backward()
    gather_stacked_grads(flat)
    opt.step(mask=torch.tensor([True, False, True]))
    assert torch.equal(flat[1], before[1]) and not torch.equal(flat[0], before[0])
    assert opt.state_dict()["step"].tolist() == [1.0, 0.0, 1.0]
    assert torch.equal(opt.state["exp_avg"][1], torch.zeros_like(flat[1]))
    opt.set("lr", [1e-2, 1e-2, 0.0])  # an annealed lr per member; lr 0 leaves member 2 where it is
    mid = flat.detach().clone()
    opt.step()
    assert torch.equal(flat[2], mid[2]) and not torch.equal(flat[1], mid[1])
    with pytest.raises(ValueError):
        opt.set("lr", [1.0, 2.0])


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.ELU])
@pytest.mark.parametrize("batch", [1, 8, 300])
def test_stacked_mlp_acting_without_gradients_matches_separate_mlps(activation, batch):
    """Under inference mode (acting, evaluation) every batch size gives the members' own outputs: the
    acting-sized shortcut (small batches), the transposed products and the sigmoid tanh (large ones)."""
    mlps = make_mlps(activation=activation)
    stack = StackedMLP.from_mlps(mlps)
    x = torch.randn(K, batch, IN)
    with torch.inference_mode():
        out = stack(x)
        refs = torch.stack([m(x[k]) for k, m in enumerate(mlps)])
    torch.testing.assert_close(out, refs, rtol=0, atol=1e-6)
