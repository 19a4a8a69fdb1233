"""Recurrent cores with a member dimension (issue 26): K members' LSTM or GRU weights stacked, ``[K, B, ...]``
batched matmuls, between the encoder (or the observation) and the policy/value heads.

- :class:`StackedRecurrent`: a multi-layer LSTM/GRU of K members, the gates of ``torch.nn.LSTM`` / ``nn.GRU``
  (same parameters, same order: LSTM i, f, g, o; GRU r, z, n) computed as one ``baddbmm`` per member
  stack and layer. Member k is built from a ``torch.nn.LSTM`` / ``nn.GRU`` (:meth:`StackedRecurrent.fresh`:
  torch's own initialization, drawn from the RNG as a plain ``nn.LSTM`` would draw it), so a member starts
  exactly as its plain run (K=1) does;
- :class:`RecurrentCores`: the policy's core and the critic's own core (sb3-contrib's RecurrentPPO default,
  ``enable_critic_lstm``: the value regression does not move the policy's memory), one state tensor for both.

A state is ONE tensor ``[K, B, S]`` (``S = state_size``: per core, per layer, h (and c for an LSTM) of
``hidden`` each): K-first, so :func:`rlx.members.member_state` slices it per member, and resetting the envs
whose episode starts is one multiply by ``1 - starts``.
"""
from __future__ import annotations

from typing import Literal, Sequence, cast

import torch
from torch import Tensor, nn

RecurrentKind = Literal["none", "lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}
STATE_PARTS = {"lstm": 2, "gru": 1}  # LSTM: (h, c); GRU: h


def reset_where(state: Tensor, starts: Tensor) -> Tensor:
    """``state`` ``[K, B, S]`` with the rows whose episode starts (``starts`` ``[K, B]``, 0/1 or bool) zeroed."""
    return state * (1.0 - starts.to(state.dtype)).unsqueeze(-1)


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """torch's LSTM cell from its pre-activations ``gates`` = x W_ih + b_ih + h W_hh + b_hh ``[..., 4H]``
    (i, f, g, o): c' = f c + i g, h' = o tanh(c'). Returns (h', c')."""
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x_gates: Tensor, h_gates: Tensor, h: Tensor) -> Tensor:
    """torch's GRU cell from x W_ih + b_ih and h W_hh + b_hh ``[..., 3H]`` (r, z, n):
    n = tanh(x_n + r h_n), h' = (1 - z) n + z h."""
    xr, xz, xn = x_gates.chunk(3, -1)
    hr, hz, hn = h_gates.chunk(3, -1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


class StackedRecurrent(nn.Module):
    """K members' ``layers``-layer LSTM or GRU: ``[K, B, in]`` inputs and a ``[K, B, state_size]`` state.

    Parameters per layer l: ``weight_ih[l]`` ``[K, in_l, G*H]``, ``weight_hh[l]`` ``[K, H, G*H]``, biases
    ``[K, 1, G*H]`` (G = 4 for an LSTM, 3 for a GRU): torch's ``weight_ih_l{l}`` transposed, stacked over
    members. The state's last dim holds, per layer, h then (LSTM) c."""

    def __init__(self, kind: Literal["lstm", "gru"], in_dim: int, hidden: int, layers: int, n: int):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"recurrent kind {kind!r}: expected lstm or gru")
        self.kind, self.in_dim, self.hidden, self.layers, self.n = kind, in_dim, hidden, layers, n
        g = GATES[kind] * hidden
        sizes = [in_dim] + [hidden] * (layers - 1)
        self.weight_ih = nn.ParameterList(nn.Parameter(torch.zeros(n, s, g)) for s in sizes)
        self.weight_hh = nn.ParameterList(nn.Parameter(torch.zeros(n, hidden, g)) for _ in sizes)
        self.bias_ih = nn.ParameterList(nn.Parameter(torch.zeros(n, 1, g)) for _ in sizes)
        self.bias_hh = nn.ParameterList(nn.Parameter(torch.zeros(n, 1, g)) for _ in sizes)

    @property
    def state_size(self) -> int:
        return self.layers * STATE_PARTS[self.kind] * self.hidden

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def fresh(cls, kind: Literal["lstm", "gru"], in_dim: int, hidden: int, layers: int) -> StackedRecurrent:
        """One member initialized as ``torch.nn.LSTM`` / ``nn.GRU`` initializes itself (from torch's RNG)."""
        module = (nn.LSTM if kind == "lstm" else nn.GRU)(in_dim, hidden, layers)
        return cls.from_torch([module])

    @classmethod
    def from_torch(cls, modules: Sequence[nn.LSTM | nn.GRU]) -> StackedRecurrent:
        """Member k = ``modules[k]`` (one shape and kind for all; batch_first and bidirectional not supported)."""
        ref = modules[0]
        kind: Literal["lstm", "gru"] = "lstm" if isinstance(ref, nn.LSTM) else "gru"
        if any(type(m) is not type(ref) or m.bidirectional or (isinstance(m, nn.LSTM) and m.proj_size) for m in modules):
            raise ValueError("from_torch: unidirectional LSTMs or GRUs of one kind expected")
        out = cls(kind, ref.input_size, ref.hidden_size, ref.num_layers, len(modules))
        weight = cast(Tensor, ref.weight_ih_l0)
        out = out.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            for layer in range(ref.num_layers):
                for mine, name in ((out.weight_ih, "weight_ih"), (out.weight_hh, "weight_hh")):
                    mine[layer].copy_(torch.stack([getattr(m, f"{name}_l{layer}").t() for m in modules]))
                for mine, name in ((out.bias_ih, "bias_ih"), (out.bias_hh, "bias_hh")):
                    mine[layer].copy_(torch.stack([getattr(m, f"{name}_l{layer}").unsqueeze(0) for m in modules]))
        return out

    @classmethod
    def stack(cls, cores: Sequence[StackedRecurrent]) -> StackedRecurrent:
        """The members of ``cores`` (each a stack of its own) as one stack, in order."""
        ref = cores[0]
        out = cls(cast(Literal["lstm", "gru"], ref.kind), ref.in_dim, ref.hidden, ref.layers, sum(c.n for c in cores))
        out = out.to(device=ref.weight_ih[0].device, dtype=ref.weight_ih[0].dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                for layer, p in enumerate(getattr(out, name)):
                    p.copy_(torch.cat([getattr(c, name)[layer] for c in cores]))
        return out

    def to_torch(self, k: int) -> nn.LSTM | nn.GRU:
        """Member k as a ``torch.nn.LSTM`` / ``nn.GRU`` (the reference the tests compare with)."""
        module = (nn.LSTM if self.kind == "lstm" else nn.GRU)(self.in_dim, self.hidden, self.layers)
        with torch.no_grad():
            for layer in range(self.layers):
                getattr(module, f"weight_ih_l{layer}").copy_(self.weight_ih[layer][k].t())
                getattr(module, f"weight_hh_l{layer}").copy_(self.weight_hh[layer][k].t())
                getattr(module, f"bias_ih_l{layer}").copy_(self.bias_ih[layer][k, 0])
                getattr(module, f"bias_hh_l{layer}").copy_(self.bias_hh[layer][k, 0])
        return module.to(self.weight_ih[0].device)

    # -- computation ---------------------------------------------------------------------------------
    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One time step: ``x`` ``[K, B, in]``, ``state`` ``[K, B, state_size]`` -> (top layer's h ``[K, B, H]``,
        the new state)."""
        parts, h_size = STATE_PARTS[self.kind], self.hidden
        per_layer = state.reshape(*state.shape[:2], self.layers, parts, h_size)
        new: list[Tensor] = []
        h_in = x
        for layer in range(self.layers):
            h = per_layer[:, :, layer, 0]
            x_gates = torch.baddbmm(self.bias_ih[layer], h_in, self.weight_ih[layer])
            h_gates = torch.baddbmm(self.bias_hh[layer], h, self.weight_hh[layer])
            if self.kind == "lstm":
                h, c = lstm_cell(x_gates + h_gates, per_layer[:, :, layer, 1])
                new += [h, c]
            else:
                h = gru_cell(x_gates, h_gates, h)
                new.append(h)
            h_in = h
        return h_in, torch.cat(new, -1)

    def sequence(self, x: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[K, T, B, in]`` from ``state`` ``[K, B, S]``; ``starts`` ``[K, T, B]``: where an episode starts
        at step t, the state is reset (zeroed) before step t. Returns (h ``[K, T, B, H]``, the state after T)."""
        return recurrent_sequence(self.kind, self.layers, self.parameter_lists(), x, state, starts)

    def parameter_lists(self) -> list[list[Tensor]]:
        """Per layer [weight_ih, weight_hh, bias_ih, bias_hh]."""
        return [[self.weight_ih[i], self.weight_hh[i], self.bias_ih[i], self.bias_hh[i]] for i in range(self.layers)]


def recurrent_sequence(kind: str, layers: int, params: list[list[Tensor]], x: Tensor, state: Tensor,
                       starts: Tensor) -> tuple[Tensor, Tensor]:
    """:meth:`StackedRecurrent.sequence` as a function of the per-layer ``params`` ([W_ih, W_hh, b_ih, b_hh],
    ``[K, ...]`` each), layer by layer over the whole sequence: the input products of all T steps are one
    ``baddbmm`` (only the recurrent product is step by step), and h and c stay separate tensors inside the
    loop (no concatenation per step): a fraction of the per-step ops and autograd nodes of repeated ``step``s."""
    k, t_len, b = x.shape[:3]
    parts = STATE_PARTS[kind]
    hidden = params[0][1].shape[1]
    keep = (1.0 - starts.to(x.dtype)).unsqueeze(-1)  # [K, T, B, 1]: 0 where the state is reset before step t
    per_layer = state.reshape(k, b, layers, parts, hidden)
    final: list[Tensor] = []
    h_in = x
    for layer in range(layers):
        w_ih, w_hh, b_ih, b_hh = params[layer]
        x_gates = torch.baddbmm(b_ih, h_in.reshape(k, t_len * b, -1), w_ih).reshape(k, t_len, b, -1)
        h = per_layer[:, :, layer, 0]
        c = per_layer[:, :, layer, 1] if kind == "lstm" else None
        outs = []
        for t in range(t_len):
            h = h * keep[:, t]
            h_gates = torch.baddbmm(b_hh, h, w_hh)
            if c is not None:
                h, c = lstm_cell(x_gates[:, t] + h_gates, c * keep[:, t])
            else:
                h = gru_cell(x_gates[:, t], h_gates, h)
            outs.append(h)
        final += [h, c] if c is not None else [h]
        h_in = torch.stack(outs, 1)
    return h_in, torch.cat(final, -1)


class RecurrentCores(nn.Module):
    """The policy's recurrent core and the critic's own one (sb3-contrib's ``enable_critic_lstm``), ``[K, B, in]``
    -> two ``[K, B, hidden]`` feature tensors; the state ``[K, B, 2 * core.state_size]`` (policy's first)."""

    def __init__(self, kind: Literal["lstm", "gru"], in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.policy = StackedRecurrent.fresh(kind, in_dim, hidden, layers)
        self.critic = StackedRecurrent.fresh(kind, in_dim, hidden, layers)

    @property
    def hidden(self) -> int:
        return self.policy.hidden

    @property
    def state_size(self) -> int:
        return self.policy.state_size + self.critic.state_size

    @property
    def members(self) -> int:
        return self.policy.n

    def zeros(self, batch: int, like: Tensor) -> Tensor:
        """The state of ``batch`` envs per member at an episode start: ``[K, batch, state_size]`` zeros."""
        return like.new_zeros(self.members, batch, self.state_size, dtype=torch.float32)

    @classmethod
    def stack(cls, cores: Sequence[RecurrentCores]) -> RecurrentCores:
        out = cores[0]
        out.policy = StackedRecurrent.stack([c.policy for c in cores])
        out.critic = StackedRecurrent.stack([c.critic for c in cores])
        return out

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(policy features, critic features, new state) of one step."""
        split = self.policy.state_size
        pi, pi_state = self.policy.step(x, state[..., :split])
        v, v_state = self.critic.step(x, state[..., split:])
        return pi, v, torch.cat([pi_state, v_state], -1)

    def sequence(self, x: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`StackedRecurrent.sequence` of both cores: (policy features, critic features ``[K, T, B, H]``,
        the state after T). Both cores run as one stack of 2K (their weights concatenated on the member dim,
        the policy's first): half the ops and autograd nodes of two sequences, the same products per member."""
        split, k = self.policy.state_size, self.members
        params = [[torch.cat([p, v]) for p, v in zip(pi, vf, strict=True)]
                  for pi, vf in zip(self.policy.parameter_lists(), self.critic.parameter_lists(), strict=True)]
        both, final = recurrent_sequence(self.policy.kind, self.policy.layers, params, torch.cat([x, x]),
                                         torch.cat([state[..., :split], state[..., split:]]), torch.cat([starts, starts]))
        return both[:k], both[k:], torch.cat([final[:k], final[k:]], -1)
