"""The global step of a window: merge every partition's summary, score, explain, check, build the record.

Pure logic over plain data, so it is tested without a broker and behaves identically whatever the partitioning.
The Faust merger agent keeps its durable state with :class:`MergerStore`: one table key per pending partition
report, plus the small board and the last published window. No value grows with the backlog of pending windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, MutableMapping, Sequence

from serving.backend import Backend, BackendUnavailable, never
from serving.explanations import Explanation, explain_verified
from trail.decoding import CANDIDATE_DECODINGS, DEFAULT_EXPLANATION_CANDIDATES
from trail.errors import Cancelled
from trail.events import format_ts
from trail.explain import Forecast
from trail.signals import PartitionSummary, TrendConfig, TrendSignals, WindowBoard, signals_for
from trail.tracker import Candidate, WindowStats, select_candidates
from trail.trending_record import (SIGNALS_SHOWN, Faithfulness, ItemSignals, Scorer, TrendingItem, TrendingRecord,
                                   WindowRef, WindowTotals)
from trail.windows import WindowSpec

if TYPE_CHECKING:
    from .config import WorkerConfig

__all__ = ["MergerStore", "PartitionReport", "WindowMerger", "SIGNALS_SHOWN"]



@dataclass(frozen=True)
class PartitionReport:
    """One partition's message to the merger for one window (sent on the internal summaries topic)."""

    partition: int
    summary: PartitionSummary
    candidates: tuple[Candidate, ...]
    stats: WindowStats
    closed_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "summary": self.summary.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates],
                "stats": [self.stats.counted, self.stats.events, self.stats.late, self.stats.rejected,
                          self.stats.items_tracked],
                "closed_at_ms": self.closed_at_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PartitionReport":
        counted, events, late, rejected, tracked = data["stats"]
        return cls(int(data["partition"]), PartitionSummary.from_dict(data["summary"]),
                   tuple(Candidate.from_dict(c) for c in data["candidates"]),
                   WindowStats(float(counted), int(events), int(late), int(rejected), int(tracked)),
                   int(data["closed_at_ms"]))


@dataclass
class WindowMerger:
    """Collects reports until every partition has reported a window, then publishes windows in order."""

    partitions: int
    spec: WindowSpec
    n_candidates: int
    top_k: int
    board_size: int = TrendConfig.board_size  # TRAIL_BOARD_SIZE: global ranks use the partitions' board size
    explanation_candidates: int = DEFAULT_EXPLANATION_CANDIDATES  # TRAIL_EXPLANATION_CANDIDATES
    board: WindowBoard = field(init=False)
    pending: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # window → partition → report
    published_through: int | None = None

    def __post_init__(self) -> None:
        self.board = WindowBoard(board_size=self.board_size)

    @classmethod
    def for_worker(cls, config: "WorkerConfig", partitions: int) -> "WindowMerger":
        """The worker's merger: every setting from the one config its partitions run with (board size included:
        global ranks are only right on a board as large as the partitions' own)."""
        return cls(partitions, config.window, config.n_candidates, config.top_k, board_size=config.trend.board_size,
                   explanation_candidates=config.explanation_candidates)

    def add(self, report: PartitionReport, backend: Backend, fallback: Backend) -> list[dict[str, Any]]:
        """Take one report (duplicates after a crash are ignored); return the records now complete, in order."""
        self.accept(report)
        return self.publish_ready(backend, fallback)

    def accept(self, report: PartitionReport) -> bool:
        """Hold ``report`` until its window is complete; False for a duplicate or an already published window."""
        window = report.summary.window_index
        if self.published_through is not None and window <= self.published_through:
            return False
        reports = self.pending.setdefault(window, {})
        if report.partition in reports:
            return False
        reports[report.partition] = report.to_dict()
        return True

    def publish_ready(self, backend: Backend, fallback: Backend,
                      cancelled: Callable[[], bool] = never) -> list[dict[str, Any]]:
        """The records of every window that all partitions have reported, in window order.

        ``cancelled`` (the worker is stopping) is asked before a window's scoring, between the backend's scoring
        batches, after the scoring and between its explanation rounds; when it says so,
        :class:`trail.errors.Cancelled` is raised and that window is left exactly as it was, pending, for the next
        start (the records before it are lost with the raise: the caller publishes none of them, and their reports
        stay pending as well)."""
        records, published_through, restore = [], self.published_through, []
        try:
            while self.pending:
                next_window = min(self.pending)
                reports = self.pending[next_window]
                if len(reports) < self.partitions:
                    break
                restore.append((next_window, reports, self.board.to_state()))
                del self.pending[next_window]
                records.append(self._publish(next_window, [PartitionReport.from_dict(r) for r in reports.values()],
                                             backend, fallback, cancelled))
                self.published_through = next_window
        except Cancelled:
            for window, reports, _ in restore:
                self.pending[window] = reports
            self.board, self.published_through = WindowBoard.from_state(restore[0][2]), published_through
            raise
        return records

    def _publish(self, window: int, reports: Sequence[PartitionReport], backend: Backend,
                 fallback: Backend, cancelled: Callable[[], bool] = never) -> dict[str, Any]:
        started = time.monotonic()
        if cancelled():
            raise Cancelled(f"window {window} not merged: stopping")
        self.board.close(window, [r.summary for r in reports])
        candidates = select_candidates((r.candidates for r in reports), self.n_candidates)
        signals = [signals_for(c.window, self.board, c.title, c.category, self.spec) for c in candidates]
        scorer, used_fallback, forecasts = backend, False, None
        try:
            forecasts = backend.score(signals, cancelled)
        except BackendUnavailable:
            scorer, used_fallback, forecasts = fallback, True, fallback.score(signals, cancelled)
        if cancelled():
            raise Cancelled(f"window {window} scored, not explained: stopping")
        order = sorted(range(len(signals)), key=lambda i: (-(forecasts[i].score or 0.0), signals[i].item_id))
        top = order[: self.top_k]
        explanations = explain_verified(scorer, [signals[i] for i in top], [forecasts[i] for i in top],
                                        [window + rank for rank in range(1, len(top) + 1)],
                                        () if used_fallback else CANDIDATE_DECODINGS[: self.explanation_candidates],
                                        cancelled)
        stats = sum((r.stats for r in reports), WindowStats())
        items = [self._item(rank, signals[i], forecasts[i], explanation)
                 for rank, i, explanation in zip(range(1, len(top) + 1), top, explanations)]
        latency_ms = int(time.time() * 1000) - min(r.closed_at_ms for r in reports)
        return TrendingRecord(
            window=WindowRef(window, format_ts(self.spec.start_of(window)), format_ts(self.spec.end_of(window))),
            generated_at=format_ts(int(time.time() * 1000)),
            scorer=Scorer(scorer.info.name, scorer.info.version, scorer.info.backend, used_fallback),
            items=tuple(items),
            stats=WindowTotals(events_counted=stats.counted, late=stats.late, rejected=stats.rejected,
                               items_tracked=stats.items_tracked, candidates_scored=len(signals),
                               partitions=len(reports), latency_ms=latency_ms,
                               merge_ms=round((time.monotonic() - started) * 1000, 2)),
        ).to_dict()

    def _item(self, rank: int, signals: TrendSignals, forecast: Forecast, explanation: Explanation) -> TrendingItem:
        result = explanation.check
        shown = signals.to_dict()
        return TrendingItem(
            rank=rank, item_id=signals.item_id, title=signals.title, category=signals.category,
            score=round(forecast.score or 0.0, 6), predicted_count=round(forecast.predicted_count, 4),
            explanation=explanation.text, explanation_source=explanation.source,
            faithfulness=Faithfulness(len(result.claims), result.verified_count, result.all_verified),
            signals=ItemSignals(**{**{name: shown[name] for name in SIGNALS_SHOWN}, "history": tuple(shown["history"])}),
        )

    def to_state(self) -> dict[str, Any]:
        return {"board": self.board.to_state(), "pending": {str(w): {str(p): r for p, r in reports.items()}
                                                             for w, reports in self.pending.items()},
                "published_through": self.published_through}

    def load_state(self, state: Mapping[str, Any] | None) -> None:
        if not state:
            return
        self.board = WindowBoard.from_state(state["board"])
        self.pending = {int(w): {int(p): r for p, r in reports.items()} for w, reports in state["pending"].items()}
        self.published_through = state["published_through"]


class MergerStore:
    """The merger's durable state in a table, each value bounded: ``r/<window>/<partition>`` per pending report
    (deleted once its window is published), ``board`` (the last window's global ranks, at most the board size) and
    ``published`` (the last window published). A pending backlog adds keys, never grows a value."""

    REPORT_PREFIX = "r/"
    LEGACY_KEY = "merger"

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    @classmethod
    def report_key(cls, window: int, partition: int) -> str:
        return f"{cls.REPORT_PREFIX}{window}/{partition}"

    def load(self, merger: WindowMerger) -> None:
        """Restore ``merger`` from the table (once per assignment of the merger's partition)."""
        if self.table.get(self.LEGACY_KEY):
            self._migrate(merger)
        board = self.table.get("board")
        merger.board = WindowBoard.from_state(board) if board else WindowBoard(board_size=merger.board_size)
        merger.published_through = self.table.get("published")
        merger.pending = {}
        for window, partition, report in self._reports():
            if merger.published_through is None or window > merger.published_through:
                merger.pending.setdefault(window, {})[partition] = report
            else:  # merged, but a crash came before its key was deleted
                del self.table[self.report_key(window, partition)]

    def _migrate(self, merger: WindowMerger) -> None:
        """State written by a worker before one-key-per-report: the whole merger in one value."""
        merger.load_state(self.table[self.LEGACY_KEY])
        for reports in merger.pending.values():
            for report in reports.values():
                self.save_report(PartitionReport.from_dict(report))
        self.table["board"] = merger.board.to_state()
        self.table["published"] = merger.published_through
        del self.table[self.LEGACY_KEY]

    def save_report(self, report: PartitionReport) -> None:
        self.table[self.report_key(report.summary.window_index, report.partition)] = report.to_dict()

    def save_published(self, merger: WindowMerger, records: Sequence[Mapping[str, Any]]) -> None:
        """After ``records`` were sent: the new board and position, then the merged reports' keys go."""
        if not records:
            return
        self.table["board"] = merger.board.to_state()
        self.table["published"] = merger.published_through
        for record in records:
            window = int(record["window"]["index"])
            for partition in range(merger.partitions):
                key = self.report_key(window, partition)
                if key in self.table:
                    del self.table[key]

    def _reports(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        for key, value in list(self.table.items()):
            if isinstance(key, str) and key.startswith(self.REPORT_PREFIX) and value is not None:
                window, _, partition = key[len(self.REPORT_PREFIX):].partition("/")
                yield int(window), int(partition), value
