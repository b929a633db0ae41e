"""Process-local counters for ``/metrics`` (Prometheus text format). Not state: they restart at zero."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from serving.backend import ModelInfo
from trail.trending_record import EXPLANATION_SOURCES, TrendingRecord
from trail.window_driver import IngestCounters

__all__ = ["Metrics"]

RATE_WINDOW_S = 10.0  # events/s is averaged over this many seconds of samples


@dataclass
class Metrics(IngestCounters):
    """The drivers' event counters (events, direct, rejected, late, forwarded out and in) and the worker's own."""

    windows_closed: int = 0
    published: int = 0
    fallbacks: int = 0
    catalogue_forwarded: int = 0
    catalogue_read_from_broker: int = 0  # entries a close read from the broker that the agent had not applied
    offset_holes: int = 0  # gaps in a partition's delivered offsets (streams/offset_holes.py)
    read_back: int = 0  # messages read back from the broker into those gaps
    stale_dropped: int = 0  # messages fetched before a rebalance, dropped (their partition is read again)
    last_latency_ms: float = 0.0
    close_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    items_tracked: dict[int, int] = field(default_factory=dict)  # per partition, as of its last window close
    explanations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EXPLANATION_SOURCES, 0))
    started_at: float = field(default_factory=time.monotonic)
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def count_published(self, record: TrendingRecord) -> None:
        """One list published: its fallback flag, who wrote each explanation, its latency."""
        self.published += 1
        self.fallbacks += record.scorer.fallback
        for item in record.items:
            self.explanations[item.explanation_source] += 1
        self.last_latency_ms = record.stats.latency_ms

    def sample(self, now: float | None = None) -> None:
        """Record the event counter (the worker calls this once a second) for :attr:`events_per_second`."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, self.events))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()

    @property
    def events_per_second(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def prometheus(self, model: ModelInfo) -> str:
        closes = list(self.close_seconds)
        lines = [
            "# HELP trail_events_total valid interactions counted", "# TYPE trail_events_total counter",
            f"trail_events_total {self.events}",
            "# HELP trail_events_per_second events counted per second over the last 10 s",
            "# TYPE trail_events_per_second gauge", f"trail_events_per_second {self.events_per_second:.3f}",
            "# HELP trail_dlq_total events sent to the dead-letter topic", "# TYPE trail_dlq_total counter",
            f"trail_dlq_total {self.rejected}",
            "# HELP trail_late_events_total events for already closed windows (dropped, counted here)",
            "# TYPE trail_late_events_total counter", f"trail_late_events_total {self.late}",
            "# HELP trail_events_routed_total events by path: counted where they arrived (direct), or forwarded by"
            " the partition that received them to the one owning their item (a producer not partitioning by"
            " murmur2 of item_id)", "# TYPE trail_events_routed_total counter",
            f'trail_events_routed_total{{path="direct"}} {self.direct}',
            f'trail_events_routed_total{{path="forwarded"}} {self.forwarded_out}',
            "# TYPE trail_forwarded_events_received_total counter",
            f"trail_forwarded_events_received_total {self.forwarded_in}",
            "# TYPE trail_catalogue_forwarded_total counter",
            f"trail_catalogue_forwarded_total {self.catalogue_forwarded}",
            "# HELP trail_catalogue_entries_read_from_broker_total catalogue entries a window close read from the"
            " broker because the catalogue agent had not applied them yet (behind, or a message Faust left out)",
            "# TYPE trail_catalogue_entries_read_from_broker_total counter",
            f"trail_catalogue_entries_read_from_broker_total {self.catalogue_read_from_broker}",
            "# HELP trail_offset_holes_total gaps in a partition's offsets as Faust delivered them; their messages"
            " are read back from the broker (trail_messages_read_back_total)",
            "# TYPE trail_offset_holes_total counter", f"trail_offset_holes_total {self.offset_holes}",
            "# TYPE trail_messages_read_back_total counter", f"trail_messages_read_back_total {self.read_back}",
            "# HELP trail_stale_messages_dropped_total messages fetched before a rebalance and handed over after it;"
            " dropped, since their partition is read again from its committed offset",
            "# TYPE trail_stale_messages_dropped_total counter",
            f"trail_stale_messages_dropped_total {self.stale_dropped}",
            "# TYPE trail_partition_windows_closed_total counter",
            f"trail_partition_windows_closed_total {self.windows_closed}",
            "# TYPE trail_windows_published_total counter", f"trail_windows_published_total {self.published}",
            "# HELP trail_fallback_total windows scored by the fallback because the configured model was unavailable",
            "# TYPE trail_fallback_total counter", f"trail_fallback_total {self.fallbacks}",
            "# HELP trail_explanations_total published explanations by who wrote them: the model (greedy), the model"
            " under constrained decoding, the composer because no model text was fully verified, or the composer"
            " because the scorer writes none", "# TYPE trail_explanations_total counter",
            *(f'trail_explanations_total{{source="{source}"}} {n}' for source, n in self.explanations.items()),
            "# HELP trail_window_latency_ms first partition close to publication of the window (wall clock)",
            "# TYPE trail_window_latency_ms gauge", f"trail_window_latency_ms {self.last_latency_ms}",
            "# TYPE trail_window_close_seconds_max gauge",
            f"trail_window_close_seconds_max {max(closes) if closes else 0.0}",
            "# TYPE trail_items_tracked gauge", f"trail_items_tracked {sum(self.items_tracked.values())}",
            "# TYPE trail_uptime_seconds gauge", f"trail_uptime_seconds {time.monotonic() - self.started_at:.1f}",
            "# HELP trail_model_info the scorer in use: model name, version and backend",
            "# TYPE trail_model_info gauge",
            f'trail_model_info{{name="{model.name}",version="{model.version}",backend="{model.backend}"}} 1',
        ]
        return "\n".join(lines) + "\n"
