"""How good are a method's explanations: faithful (the checker), consistent with its score, close to the grounded
references, varied.

For each sampled test item a method writes an explanation of *its own* predicted count; the checker
(:func:`trail.explain.check`) verifies every claim against the item's signals and that predicted count.

- claim precision — verified claims / claims, over all explanations (micro-averaged); ``fully_verified`` — the
  share of explanations with at least one claim and no false one (what the worker can publish as is);
- coverage — mean share of the claim kinds available for the item that the text addresses;
- agreement — the share of explanations that state a forecast direction and state the one their score implies
  (:func:`trail.explain.forecast_direction`); an explanation with no forecast claim does not agree;
- BLEU-4 and ROUGE-L against the composer's phrasings of the *true* outcome (the training targets' style, with
  the real next count), distinct-2 over all explanations.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from trail.decoding import GREEDY, Decoding
from trail.explain import Forecast, check, compose
from trail.signals import TrendSignals

from .text_metrics import corpus_bleu4, distinct_n, mean_rouge_l

__all__ = ["ExplainedItem", "ExplanationResult", "ModelAsBackend", "evaluate_explanations", "published_explainer"]

N_REFERENCE_PHRASINGS = 6

Explainer = Callable[[Sequence[TrendSignals], Sequence[float]], list[str]]


@dataclass(frozen=True)
class ExplainedItem:
    signals: TrendSignals
    predicted_count: float
    true_count: float


@dataclass
class ExplanationResult:
    name: str
    n: int
    claim_precision: float
    fully_verified: float
    coverage: float
    agreement: float
    bleu4: float
    rouge_l: float
    distinct2: float
    ms_per_explanation: float
    samples: list[dict] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, float]:
        return {"claim_precision": self.claim_precision, "fully_verified": self.fully_verified,
                "coverage": self.coverage, "agreement": self.agreement, "bleu4": self.bleu4,
                "rouge_l": self.rouge_l, "distinct2": self.distinct2, "ms_per_explanation": self.ms_per_explanation}


@dataclass
class ModelAsBackend:
    """The PyTorch model behind the serving protocol's ``explain``, so evaluation runs the worker's selection."""

    model: object  # training.model.TrailModel

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        decoding = decodings[0] if decodings else GREEDY
        assert decodings is None or len(set(decodings)) == 1, "one decoding per call"
        return list(self.model.explain(signals, [f.predicted_count for f in forecasts], decoding=decoding))


def published_explainer(model: object, sources: Counter) -> Explainer:
    """What the worker publishes for these items: the first candidate the checker fully verifies
    (:func:`serving.explanations.explain_verified`), else the composer; ``sources`` counts who wrote each."""
    from serving.explanations import explain_verified

    def explain(signals: Sequence[TrendSignals], counts: Sequence[float]) -> list[str]:
        chosen = explain_verified(ModelAsBackend(model), signals, [Forecast(c) for c in counts],  # type: ignore[arg-type]
                                  range(len(signals)))
        sources.update(e.source for e in chosen)
        return [e.text for e in chosen]

    return explain


def evaluate_explanations(name: str, explain: Explainer, items: Sequence[ExplainedItem]) -> ExplanationResult:
    if not items:
        raise ValueError("evaluate_explanations needs at least one item")
    started = time.perf_counter()
    texts = explain([i.signals for i in items], [i.predicted_count for i in items])
    seconds = time.perf_counter() - started
    claims = verified = fully = agreeing = 0
    coverages: list[float] = []
    samples = []
    for item, text in zip(items, texts):
        result = check(text, item.signals, Forecast(item.predicted_count))
        claims += len(result.claims)
        verified += result.verified_count
        fully += result.all_verified
        agreeing += result.forecast_agrees is True
        coverages.append(result.coverage)
        samples.append({"item_id": item.signals.item_id, "title": item.signals.title,
                        "window_index": item.signals.item.window_index, "history": list(item.signals.item.history),
                        "predicted": round(item.predicted_count, 2), "true": item.true_count, "text": text,
                        "claims": len(result.claims), "verified": result.verified_count,
                        "false_claims": [c.reason for c in result.claims if not c.verified]})
    references = [[compose(i.signals, Forecast(i.true_count), variant) for variant in range(N_REFERENCE_PHRASINGS)]
                  for i in items]
    return ExplanationResult(
        name=name, n=len(items),
        claim_precision=verified / claims if claims else 0.0,
        fully_verified=fully / len(items),
        coverage=float(np.mean(coverages)),
        agreement=agreeing / len(items),
        bleu4=corpus_bleu4(texts, references),
        rouge_l=mean_rouge_l(texts, references),
        distinct2=distinct_n(texts, 2),
        ms_per_explanation=seconds * 1000 / len(items),
        samples=samples,
    )
