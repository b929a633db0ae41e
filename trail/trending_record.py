"""The record published on ``trending-with-explanations``: one ranked, explained list per window.

These dataclasses are the contract. The merger builds a :class:`TrendingRecord` and publishes ``to_dict()``;
readers (the run page's feed, ``trail run``'s console, tests) parse with :meth:`TrendingRecord.from_dict`;
``streams/trending.schema.json`` is generated from them (``python -m trail.trending_record``) and a test checks that
the file is current.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from .json_schema import document_schema, schema

__all__ = ["EXPLANATION_SOURCES", "SCORER_BACKENDS", "SIGNALS_SHOWN", "Faithfulness", "ItemSignals", "Scorer",
           "TrendingItem", "TrendingRecord", "WindowRef", "WindowTotals", "trending_schema"]

# who wrote an item's text: the model as decoded, the model under constrained decoding, the composer because no
# model text verified, or the composer because the scorer has no language model (baselines)
EXPLANATION_SOURCES = ("model", "model-constrained", "composer-fallback", "composer")
SCORER_BACKENDS = ("baseline", "onnx", "triton")
SCHEMA_ID = "trail/trending-with-explanations"
SCHEMA_TITLE = "One window of the trending-with-explanations topic"


@dataclass(frozen=True)
class WindowRef:
    index: int = field(metadata=schema(description="window number since the origin (Monday 1970-01-05 for weeks)"))
    start: str = field(metadata=schema(format="date-time"))
    end: str = field(metadata=schema(format="date-time", description="exclusive"))


@dataclass(frozen=True)
class Scorer:
    name: str = field(metadata=schema(examples=["baseline-ema"]))
    version: str
    backend: str = field(metadata=schema(enum=list(SCORER_BACKENDS)))
    fallback: bool = field(metadata=schema(description="true when the configured scorer was unavailable"))


@dataclass(frozen=True)
class Faithfulness:
    claims: int = field(metadata=schema(minimum=0))
    verified: int = field(metadata=schema(minimum=0))
    all_verified: bool


@dataclass(frozen=True)
class ItemSignals:
    """The trend signals shown with an item (a subset of :class:`trail.signals.TrendSignals`)."""

    count: float
    previous_count: float
    acceleration: float
    history: tuple[float, ...]
    momentum: float
    zscore: float
    level_ratio: float
    distinct_users: int
    age_windows: int
    forecast: float
    rank: int | None
    previous_rank: int | None
    rank_change: int | None
    category_growth: float


SIGNALS_SHOWN = tuple(f.name for f in dataclasses.fields(ItemSignals))


@dataclass(frozen=True)
class TrendingItem:
    rank: int = field(metadata=schema(minimum=1))
    item_id: str
    title: str
    category: str | None
    score: float
    predicted_count: float = field(metadata=schema(minimum=0))
    explanation: str
    explanation_source: str = field(metadata=schema(enum=list(EXPLANATION_SOURCES)))
    faithfulness: Faithfulness
    signals: ItemSignals


@dataclass(frozen=True)
class WindowTotals:
    events_counted: float = field(metadata=schema(description="sum of event weights counted in this window"))
    late: int = field(metadata=schema(description="events that arrived after their window closed (not counted)"))
    rejected: int = field(metadata=schema(description="events sent to the DLQ since the previous window closed"))
    items_tracked: int
    candidates_scored: int
    partitions: int
    latency_ms: int = field(metadata=schema(description="first partition close to publication"))
    merge_ms: float


@dataclass(frozen=True)
class TrendingRecord:
    window: WindowRef
    generated_at: str = field(metadata=schema(format="date-time"))
    scorer: Scorer
    items: tuple[TrendingItem, ...]
    stats: WindowTotals

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (tuples as lists), exactly the fields of the schema."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrendingRecord:
        return _build(cls, data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint, raw = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw)
        elif typing.get_origin(hint) is tuple:
            (element, _) = typing.get_args(hint)
            values[f.name] = tuple(_build(element, r) if dataclasses.is_dataclass(element) else r for r in raw)
        else:
            values[f.name] = raw
    return cls(**values)


def trending_schema() -> dict[str, Any]:
    return document_schema(TrendingRecord, SCHEMA_ID, SCHEMA_TITLE)


def schema_text() -> str:
    """The schema file's exact content."""
    return json.dumps(trending_schema(), indent=2) + "\n"


if __name__ == "__main__":  # python -m trail.trending_record > streams/trending.schema.json
    sys.stdout.write(schema_text())
