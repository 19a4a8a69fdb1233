"""Several independent MLPs evaluated as one module with batched matmuls (twin critics, Q ensembles).

Two critics as one ``[E, in, out]`` weight per layer cost one ``baddbmm`` per layer instead of one
``linear`` per layer per critic: half the kernel launches and Python dispatches in the hot update path,
with identical math (each member has its own parameters and sees the same input).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from rlx.networks.mlp import ACTIVATIONS


class EnsembleMLP(nn.Module):
    """``n`` MLPs in -> hidden... -> out, evaluated together: ``[B, in]`` -> ``[n, B, out]``.

    Each layer is initialized like ``nn.Linear``'s default (U(±1/sqrt(fan_in)) for weights and
    biases), the init SB3 uses for its off-policy critics.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_sizes: Sequence[int], activation: str, n: int):
        super().__init__()
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(n, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, b).uniform_(-bound, bound)))
        self.activation = ACTIVATIONS[activation]()
        self.n = n

    def forward(self, x: Tensor, members: int | None = None, detach_params: bool = False) -> Tensor:
        """Outputs of the first ``members`` MLPs (all by default).

        ``detach_params``: no gradient into this module's weights (still through ``x``), e.g. for an
        actor loss backpropagated through the critic: skips the weight-gradient matmuls entirely.
        """
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if members is not None:
                w, b = w[:members], b[:members]
            if detach_params:
                w, b = w.detach(), b.detach()
            # Layer 0 gets the shared [B, in] input; expand is a view (stride 0), not a copy.
            x = torch.baddbmm(b, x if x.dim() == 3 else x.expand(w.shape[0], *x.shape), w)
            if i < last:
                x = self.activation(x)
        return x
