"""TRAIL's loss terms, each a plain function of tensors so it can be tested and switched off on its own.

- :func:`explanation_lm_loss` — next-token cross-entropy over the explanation tokens only.
- :func:`score_regression_loss` — Huber loss on ``log1p(next count)``.
- :func:`pairwise_ranking_loss` — RankNet within a window: for every pair whose true next counts differ, the
  logistic loss of the predicted order.
- :func:`info_nce_loss` — contrastive alignment: each item's signal embedding must pick its own explanation
  out of the batch's explanations (other items' = negatives) and its counterfactuals (hard negatives).
- :func:`likelihood_margin_loss` — the faithful explanation must be at least ``margin`` nats more probable
  (summed over its tokens) than its counterfactual, given the same signals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .loss_weights import LossWeights

__all__ = [
    "LossWeights",
    "explanation_lm_loss",
    "info_nce_loss",
    "likelihood_margin_loss",
    "pairwise_ranking_loss",
    "score_regression_loss",
    "sequence_log_likelihood",
]


def sequence_log_likelihood(token_log_probs: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Summed log-probability of each row's continuation tokens (``rows[i]`` = the row of token i)."""
    return torch.zeros(n_rows, dtype=token_log_probs.dtype).index_add(0, rows, token_log_probs)


def explanation_lm_loss(token_log_probs: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per explanation token."""
    return -token_log_probs.mean() if token_log_probs.numel() else token_log_probs.sum()


def score_regression_loss(predicted_log: torch.Tensor, true_counts: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(predicted_log, torch.log1p(true_counts), delta=1.0)


def pairwise_ranking_loss(scores: torch.Tensor, true_counts: torch.Tensor) -> torch.Tensor:
    """Mean RankNet loss over ordered pairs (i, j) with true_i > true_j; 0 when all labels tie."""
    better = true_counts.unsqueeze(1) > true_counts.unsqueeze(0)
    if not better.any():
        return scores.sum() * 0.0
    margins = scores.unsqueeze(1) - scores.unsqueeze(0)
    return F.softplus(-margins[better]).mean()


def listwise_softmax_loss(scores: torch.Tensor, true_counts: torch.Tensor) -> torch.Tensor:
    """ListNet (top-one): cross-entropy between the softmax of the true ``log1p`` counts and the softmax of the
    scores, over one window's items. Unlike the pairwise term it weighs the top of the list most: mass moved away
    from the item that really leads costs more than a swap lower down."""
    target = torch.softmax(torch.log1p(true_counts), dim=0)
    return -(target * torch.log_softmax(scores, dim=0)).sum()


def score_terms(scores: torch.Tensor, true_counts: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """The score losses that are switched on (unweighted): what TRAIL and its no-LLM ablation both train on."""
    terms: dict[str, torch.Tensor] = {}
    if weights.regression > 0:
        terms["regression"] = score_regression_loss(scores, true_counts)
    if weights.pairwise > 0:
        terms["pairwise"] = pairwise_ranking_loss(scores, true_counts)
    if weights.listwise > 0:
        terms["listwise"] = listwise_softmax_loss(scores, true_counts)
    return terms


def info_nce_loss(signal: torch.Tensor, explanation: torch.Tensor, counterfactual: torch.Tensor | None,
                  temperature: float) -> torch.Tensor:
    """Cross-entropy of picking row i's explanation among all explanations and counterfactuals of the batch."""
    signal = F.normalize(signal, dim=-1)
    candidates = explanation if counterfactual is None else torch.cat([explanation, counterfactual], dim=0)
    logits = signal @ F.normalize(candidates, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(signal.shape[0]))


def likelihood_margin_loss(faithful: torch.Tensor, counterfactual: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge on the log-likelihood gap: ``max(0, margin - (log p(faithful) - log p(counterfactual)))``."""
    return F.relu(margin - (faithful - counterfactual)).mean()
