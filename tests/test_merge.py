"""The merge step: reports from every partition → one record; duplicates ignored; the checker gates explanations;
an unavailable scorer falls back to the baseline, flagged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import jsonschema
import pytest

from serving.backend import BackendUnavailable, ModelInfo, never
from serving.baseline import BaselineBackend
from streams.merge import MergerStore, PartitionReport, WindowMerger
from trail.events import Interaction
from trail.decoding import CANDIDATE_DECODINGS, GREEDY, Decoding
from trail.errors import Cancelled
from trail.explain import Forecast, check, compose, counterfactual, repeated_clause
from trail.signals import TrendConfig, TrendSignals
from trail.tracker import ItemRecord, WindowStats, apply_event, close_partition_window
from trail.windows import WindowSpec, parse_duration

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "streams" / "trending.schema.json").read_text())
SPEC = WindowSpec(parse_duration("1h"))


def _reports(window: int, partitions: int = 2) -> list[PartitionReport]:
    shards = [dict[str, ItemRecord]() for _ in range(partitions)]
    for n in range(60):
        item = f"item{n % 9}"
        shard = shards[n % 9 % partitions]
        for index in (window - 1, window):
            apply_event(shard.setdefault(item, ItemRecord(item, title=item.upper(), category="C")),
                        Interaction(item, SPEC.start_of(index), user_id=f"u{n}"), index)
    reports = []
    for partition, shard in enumerate(shards):
        close_partition_window(shard, window - 1, TrendConfig(), 20)
        result = close_partition_window(shard, window, TrendConfig(), 20)
        reports.append(PartitionReport(partition, result.summary, result.candidates,
                                       WindowStats(counted=sum(w.count for w in result.windows)), 0))
    return reports


@dataclass(frozen=True)
class LyingModel:
    """A scorer whose explanations contradict the signals (what a badly trained model would write)."""

    info: ModelInfo = ModelInfo("liar", "7", "onnx")

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        return BaselineBackend().score(signals)

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        return [counterfactual(s, f, "flip_direction") for s, f in zip(signals, forecasts)]


@dataclass
class LearningModel:
    """Greedy text true for items of even rank in its batch, false otherwise; every constrained text is true."""

    info: ModelInfo = ModelInfo("learner", "3", "onnx")
    calls: list[tuple[Decoding, int]] = field(default_factory=list)

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        return BaselineBackend().score(signals)

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        assert decodings is not None and len(set(decodings)) == 1
        self.calls.append((decodings[0], len(signals)))
        return [compose(s, f) if decodings[0].constrained or n % 2 == 0 else counterfactual(s, f, "flip_direction")
                for n, (s, f) in enumerate(zip(signals, forecasts))]


@dataclass(frozen=True)
class DownModel:
    info: ModelInfo = ModelInfo("down", "1", "triton")

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        raise BackendUnavailable("server unreachable")

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        raise BackendUnavailable("server unreachable")


def test_a_window_is_published_once_every_partition_reported() -> None:
    merger = WindowMerger(2, SPEC, n_candidates=20, top_k=5)
    first, second = _reports(100)
    assert merger.add(first, BaselineBackend(), BaselineBackend()) == []
    assert merger.add(first, BaselineBackend(), BaselineBackend()) == []  # a duplicate after a crash
    [record] = merger.add(second, BaselineBackend(), BaselineBackend())
    jsonschema.validate(record, SCHEMA)
    assert record["window"]["index"] == 100 and record["stats"]["partitions"] == 2
    assert record["stats"]["events_counted"] == 60.0
    assert [i["rank"] for i in record["items"]] == [1, 2, 3, 4, 5]
    assert all(i["explanation_source"] == "composer" and i["faithfulness"]["all_verified"] for i in record["items"])
    assert merger.add(second, BaselineBackend(), BaselineBackend()) == []  # already published


def test_state_round_trip_keeps_pending_reports() -> None:
    merger = WindowMerger(2, SPEC, 20, 5)
    first, second = _reports(100)
    merger.add(first, BaselineBackend(), BaselineBackend())
    restored = WindowMerger(2, SPEC, 20, 5)
    restored.load_state(json.loads(json.dumps(merger.to_state())))
    assert len(restored.add(second, BaselineBackend(), BaselineBackend())) == 1


def test_a_false_explanation_never_ships_as_is() -> None:
    merger = WindowMerger(2, SPEC, 20, 5)
    records = [r for report in _reports(100) for r in merger.add(report, LyingModel(), BaselineBackend())]
    items = records[0]["items"]
    assert {i["explanation_source"] for i in items} == {"composer-fallback"}
    assert all(i["faithfulness"]["all_verified"] for i in items)
    assert records[0]["scorer"] == {"name": "liar", "version": "7", "backend": "onnx", "fallback": False}


@dataclass
class StopAfter:
    """A stop that arrives after ``explain_calls`` explanation rounds of a merge in flight (the worker's SIGTERM)."""

    model: LyingModel
    explain_calls: int
    calls: int = 0

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        return self.model.score(signals)

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        self.calls += 1
        return self.model.explain(signals, forecasts, decodings)

    def stopping(self) -> bool:
        return self.calls >= self.explain_calls


@pytest.mark.parametrize("rounds_before_the_stop", [0, 1, 3])
def test_a_stop_gives_up_a_merge_between_rounds_and_leaves_its_window_pending(rounds_before_the_stop: int) -> None:
    """A model whose texts never verify runs every round; a stop after N rounds ends the merge before round N + 1
    (before scoring for N = 0), publishes nothing and leaves the merger exactly as it was, so the next try (the next
    start) publishes the same record as a merge that was never stopped."""
    reference = WindowMerger(2, SPEC, 20, 5, explanation_candidates=len(CANDIDATE_DECODINGS))
    expected = [r for report in _reports(100) for r in reference.add(report, LyingModel(), BaselineBackend())]
    merger = WindowMerger(2, SPEC, 20, 5, explanation_candidates=len(CANDIDATE_DECODINGS))
    for report in _reports(100):
        merger.accept(report)
    before = json.dumps(merger.to_state(), sort_keys=True)
    stop = StopAfter(LyingModel(), rounds_before_the_stop)
    with pytest.raises(Cancelled):
        merger.publish_ready(stop, BaselineBackend(), stop.stopping)
    assert stop.calls == rounds_before_the_stop < len(CANDIDATE_DECODINGS)
    assert json.dumps(merger.to_state(), sort_keys=True) == before
    again = merger.publish_ready(LyingModel(), BaselineBackend())
    assert [r["items"] for r in again] == [r["items"] for r in expected] and len(expected) == 1


@dataclass
class StopWhileScoring:
    """A scorer during whose scoring the stop arrives: it gives up as OnnxBackend does between its batches."""

    model: LyingModel = field(default_factory=LyingModel)
    stop: bool = False

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        self.stop = True
        if cancelled():
            raise Cancelled("scoring given up: stopping")
        return self.model.score(signals)

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        return self.model.explain(signals, forecasts, decodings)


def test_a_stop_during_scoring_leaves_the_window_pending() -> None:
    merger = WindowMerger(2, SPEC, 20, 5)
    for report in _reports(100):
        merger.accept(report)
    before = json.dumps(merger.to_state(), sort_keys=True)
    scorer = StopWhileScoring()
    with pytest.raises(Cancelled, match="scoring given up"):
        merger.publish_ready(scorer, BaselineBackend(), lambda: scorer.stop)
    assert json.dumps(merger.to_state(), sort_keys=True) == before
    assert [r["window"]["index"] for r in merger.publish_ready(LyingModel(), BaselineBackend())] == [100]


def test_the_first_fully_verified_candidate_ships_and_says_how_it_was_written() -> None:
    """Greedy texts that verify ship as "model"; the others get a constrained candidate in one batched call."""
    merger, model = WindowMerger(2, SPEC, 20, 6), LearningModel()
    records = [r for report in _reports(100) for r in merger.add(report, model, BaselineBackend())]
    sources = [i["explanation_source"] for i in records[0]["items"]]
    assert sources == ["model", "model-constrained"] * 3
    assert model.calls == [(GREEDY, 6), (Decoding(constrained=True), 3)]
    assert all(i["faithfulness"]["all_verified"] for i in records[0]["items"])
    jsonschema.validate(records[0], SCHEMA)


@dataclass
class RepeatingModel:
    """Greedy text that says its first sentence twice (every claim true); constrained text that does not."""

    info: ModelInfo = ModelInfo("looper", "2", "onnx")
    greedy_verified: list[bool] = field(default_factory=list)

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        return BaselineBackend().score(signals)

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        assert decodings is not None
        texts = [compose(s, f) for s, f in zip(signals, forecasts)]
        texts = [text if d.constrained else f"{text.split('. ')[0]}. {text}" for text, d in zip(texts, decodings)]
        self.greedy_verified += [check(t, s, f).all_verified for t, s, f, d in zip(texts, signals, forecasts, decodings)
                                 if not d.constrained]
        return texts


def test_a_verified_text_that_says_a_clause_twice_is_not_published() -> None:
    merger = WindowMerger(2, SPEC, 20, 4)
    model = RepeatingModel()
    records = [r for report in _reports(100) for r in merger.add(report, model, BaselineBackend())]
    assert model.greedy_verified == [True] * 4  # the checker alone would have published them
    items = records[0]["items"]
    assert [i["explanation_source"] for i in items] == ["model-constrained"] * 4
    assert all(repeated_clause(i["explanation"]) is None and i["faithfulness"]["all_verified"] for i in items)


def test_an_unavailable_scorer_falls_back_to_the_baseline_flagged() -> None:
    merger = WindowMerger(2, SPEC, 20, 5)
    records = [r for report in _reports(100) for r in merger.add(report, DownModel(), BaselineBackend())]
    assert records[0]["scorer"] == {"name": "baseline-ema", "version": "1", "backend": "baseline", "fallback": True}
    assert len(records[0]["items"]) == 5


def test_the_merger_store_keeps_one_bounded_value_per_pending_report_and_restores_exactly() -> None:
    table: dict[str, object] = {}
    store = MergerStore(table)
    merger = WindowMerger(3, SPEC, 20, 5)
    sizes = []
    for window in range(100, 110):  # partition 2 lags: ten windows wait with two reports each
        for report in _reports(window, partitions=3)[:2]:
            assert merger.accept(report)
            store.save_report(report)
            sizes.append(max(len(json.dumps(v)) for v in table.values()))
        assert merger.publish_ready(BaselineBackend(), BaselineBackend()) == []
    assert len(table) == 20 and max(sizes) < 1.5 * sizes[0]  # one key per report: no value grows
    assert not merger.accept(_reports(100, partitions=3)[0])  # a duplicate after a crash

    restored = WindowMerger(3, SPEC, 20, 5)
    MergerStore(json.loads(json.dumps(table))).load(restored)
    def canonical(pending: dict) -> dict:
        return {w: {p: json.dumps(r, sort_keys=True) for p, r in reports.items()} for w, reports in pending.items()}

    assert canonical(restored.pending) == canonical(merger.pending) and len(restored.pending) == 10
    published = []
    for window in range(100, 110):
        report = _reports(window, partitions=3)[2]
        restored.accept(report)
        records = restored.publish_ready(BaselineBackend(), BaselineBackend())
        store.save_published(restored, records)
        published += [r["window"]["index"] for r in records]
    assert published == list(range(100, 110))
    assert set(table) == {"board", "published"} and table["published"] == 109  # merged reports deleted


def test_the_global_board_uses_the_configured_board_size() -> None:
    merger = WindowMerger(2, SPEC, 20, 5, board_size=3)
    for window in (100, 101):
        for report in _reports(window):
            merger.add(report, BaselineBackend(), BaselineBackend())
    assert merger.board.board_size == 3 and sorted(merger.board.ranks.values()) == [1, 2, 3]


def test_the_workers_merger_takes_every_setting_from_the_worker_config() -> None:
    """The bug this guards: the worker built its merger with the default board (200) while its partitions used
    TRAIL_BOARD_SIZE, so any other size gave wrong global ranks. Partitions and merger now read one config."""
    from streams.config import WorkerConfig

    config = WorkerConfig(window=SPEC, trend=TrendConfig(board_size=3), n_candidates=20, top_k=5,
                          explanation_candidates=1)
    merger = WindowMerger.for_worker(config, partitions=2)
    assert (merger.board.board_size, merger.n_candidates, merger.top_k, merger.explanation_candidates) == (3, 20, 5, 1)
    assert config.driver_settings(2).trend.board_size == 3
    for window in (100, 101):
        for report in _reports(window):
            merger.add(report, BaselineBackend(), BaselineBackend())
    assert sorted(merger.board.ranks.values()) == [1, 2, 3]


def test_a_merger_saved_whole_by_an_older_worker_is_migrated_to_one_key_per_report() -> None:
    old = WindowMerger(3, SPEC, 20, 5)
    for report in _reports(100, partitions=3)[:2]:
        old.add(report, BaselineBackend(), BaselineBackend())
    table: dict[str, object] = {"merger": json.loads(json.dumps(old.to_state()))}
    merger = WindowMerger(3, SPEC, 20, 5)
    MergerStore(table).load(merger)
    assert "merger" not in table and sorted(k for k in table if k.startswith("r/")) == ["r/100/0", "r/100/1"]
    [record] = merger.add(_reports(100, partitions=3)[2], BaselineBackend(), BaselineBackend())
    assert record["window"]["index"] == 100
