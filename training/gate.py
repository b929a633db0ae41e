"""The deployment gate: a candidate model goes live only if it is at least as good as the one serving.

Both are measured on the same held-out windows by the evaluation harness (:func:`training.evaluate.evaluate` for
the forecast, :func:`training.explanation_eval.evaluate_explanations` for the texts). Each gate metric has a
margin: how much worse than the serving model the candidate may be and still pass (0 = never worse).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping

__all__ = ["GATE_METRICS", "GateDecision", "GateMargins", "decide"]

# metric → True when higher is better; the order is the table's
GATE_METRICS: dict[str, bool] = {"ndcg@20": True, "mae_log1p": False, "claim_precision": True,
                                 "fully_verified": True}


@dataclass(frozen=True)
class GateMargins:
    """How much worse than the serving model a candidate may be on each metric (absolute units)."""

    ndcg: float = 0.0
    mae: float = 0.0
    claim_precision: float = 0.0
    fully_verified: float = 0.0

    def of(self, metric: str) -> float:
        return {"ndcg@20": self.ndcg, "mae_log1p": self.mae, "claim_precision": self.claim_precision,
                "fully_verified": self.fully_verified}[metric]


@dataclass(frozen=True)
class GateDecision:
    candidate: dict[str, float]
    serving: dict[str, float] | None  # None: nothing serves yet (a first publication passes)
    margins: GateMargins
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self, context: Mapping[str, Mapping[str, float]] = {}) -> str:
        """The comparison as a Markdown table; ``context`` rows (baselines) are shown, not gated."""
        head = "| model | " + " | ".join(GATE_METRICS) + " |"
        lines = [head, "| --- |" + " --- |" * len(GATE_METRICS)]
        rows = [("candidate", self.candidate), *([("serving", self.serving)] if self.serving else []),
                *context.items()]
        for name, values in rows:
            cells = [f"{values[m]:.4f}" if m in values else "–" for m in GATE_METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        margins = ", ".join(f"{m} {self.margins.of(m):g}" for m in GATE_METRICS)
        verdict = "PASSED" if self.passed else "REFUSED: " + "; ".join(self.failures)
        return "\n".join([*lines, "", f"margins: {margins}", f"gate: {verdict}"])

    def to_dict(self) -> dict:
        return {"candidate": self.candidate, "serving": self.serving, "margins": asdict(self.margins),
                "passed": self.passed, "failures": list(self.failures)}


def decide(candidate: Mapping[str, float], serving: Mapping[str, float] | None,
           margins: GateMargins = GateMargins()) -> GateDecision:
    """Pass when, on every gate metric, the candidate is no worse than ``serving`` by more than its margin.

    >>> decide({"ndcg@20": .9, "mae_log1p": .4, "claim_precision": 1, "fully_verified": 1},
    ...        {"ndcg@20": .8, "mae_log1p": .5, "claim_precision": 1, "fully_verified": 1}).passed
    True
    >>> decide({"ndcg@20": .7, "mae_log1p": .4, "claim_precision": 1, "fully_verified": 1},
    ...        {"ndcg@20": .8, "mae_log1p": .5, "claim_precision": 1, "fully_verified": 1}).failures
    ('ndcg@20 0.7000 < serving 0.8000 - margin 0',)
    """
    failures = [f"{metric} is {candidate[metric]} (not a number)" for metric in GATE_METRICS
                if not math.isfinite(float(candidate[metric]))]
    if serving is not None:
        for metric, higher_is_better in GATE_METRICS.items():
            mine, theirs, margin = float(candidate[metric]), float(serving[metric]), margins.of(metric)
            if higher_is_better and mine < theirs - margin:
                failures.append(f"{metric} {mine:.4f} < serving {theirs:.4f} - margin {margin:g}")
            elif not higher_is_better and mine > theirs + margin:
                failures.append(f"{metric} {mine:.4f} > serving {theirs:.4f} + margin {margin:g}")
    return GateDecision(dict(candidate), dict(serving) if serving is not None else None, margins, tuple(failures))
