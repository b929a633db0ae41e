"""Several score heads averaged, folded exactly into one wider :class:`~training.model.ScoreHead`.

Why: a refit head's validation numbers swing from epoch to epoch (the shipped Online Retail refit's MAE ranged
0.28-0.55 over its 30 epochs), and picking the best of many noisy epochs on a few validation windows did not carry
over to the test windows. Averaging heads trained with different seeds lowers that variance instead of selecting on
it. Folded into one head of ``members × width`` units, the average is what the export already knows how to run:
the score graph, the Triton model and the worker see an ordinary, wider head (``TrailConfig.head_hidden``).

The fold is exact. Member ``k`` computes ``c + w2ₖ·gelu(W1ₖ·[γₖ⊙n + βₖ ; f] + b1ₖ) + b2ₖ``, where ``n`` is the
hidden state normalised without affine terms, ``f`` the features and ``c`` the current log count. So the wide head
normalises with ``γ = 1, β = 0``, stacks the first layers with each member's ``γₖ`` folded into its hidden-state
columns and ``W1ₖ·βₖ`` into its bias, and its last layer is the members' last layers side by side, divided by the
number of members (their biases averaged): the mean of the members' outputs, up to float rounding.

>>> import torch
>>> from training.model import ScoreHead
>>> torch.manual_seed(0) and None
>>> members = [ScoreHead(8, 3, 4) for _ in range(3)]
>>> for member in members:
...     for parameter in member.parameters():
...         _ = torch.nn.init.normal_(parameter)
>>> wide = ensemble_head(members)
>>> wide.mlp[0].out_features
12
>>> hidden, features, current = torch.randn(5, 8), torch.randn(5, 3), torch.randn(5)
>>> mean = torch.stack([m(hidden, features, current) for m in members]).mean(0)
>>> bool(torch.allclose(wide(hidden, features, current), mean, atol=1e-5))
True
"""

from __future__ import annotations

from typing import Sequence

import torch

from .model import ScoreHead

__all__ = ["ensemble_head"]


def ensemble_head(members: Sequence[ScoreHead]) -> ScoreHead:
    """One :class:`ScoreHead` whose output is the mean of ``members``' outputs (see the module docstring)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    first = members[0].mlp[0]
    hidden_size = members[0].norm.normalized_shape[0]
    n_features = first.in_features - hidden_size
    width = first.out_features
    with torch.random.fork_rng():  # its initial weights are all overwritten: leave the caller's random stream alone
        wide = ScoreHead(hidden_size, n_features, width * len(members))
    with torch.no_grad():
        wide.norm.weight.fill_(1.0)
        wide.norm.bias.zero_()
        wide.norm.eps = members[0].norm.eps
        for k, member in enumerate(members):
            inner, outer = member.mlp[0], member.mlp[2]
            if inner.in_features != first.in_features or inner.out_features != width:
                raise ValueError("ensemble members must have the same shape")
            rows = slice(k * width, (k + 1) * width)
            on_hidden = inner.weight[:, :hidden_size]
            wide.mlp[0].weight[rows, :hidden_size] = on_hidden * member.norm.weight
            wide.mlp[0].weight[rows, hidden_size:] = inner.weight[:, hidden_size:]
            wide.mlp[0].bias[rows] = inner.bias + on_hidden @ member.norm.bias
            wide.mlp[2].weight[:, rows] = outer.weight / len(members)
        wide.mlp[2].bias.copy_(torch.stack([m.mlp[2].bias for m in members]).mean(0))
    return wide
