"""Process-local counters for ``/metrics`` (Prometheus text format). Not state: they restart at zero."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from serving.backend import ModelInfo

__all__ = ["Metrics"]


@dataclass
class Metrics:
    events: int = 0
    rejected: int = 0
    late: int = 0
    windows_closed: int = 0
    published: int = 0
    fallbacks: int = 0
    last_latency_ms: float = 0.0
    close_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=100))

    def prometheus(self, model: ModelInfo) -> str:
        closes = list(self.close_seconds)
        lines = [
            "# TYPE trail_events_total counter", f"trail_events_total {self.events}",
            "# TYPE trail_dlq_total counter", f"trail_dlq_total {self.rejected}",
            "# TYPE trail_late_events_total counter", f"trail_late_events_total {self.late}",
            "# TYPE trail_partition_windows_closed_total counter",
            f"trail_partition_windows_closed_total {self.windows_closed}",
            "# TYPE trail_windows_published_total counter", f"trail_windows_published_total {self.published}",
            "# TYPE trail_fallback_total counter", f"trail_fallback_total {self.fallbacks}",
            "# TYPE trail_window_latency_ms gauge", f"trail_window_latency_ms {self.last_latency_ms}",
            "# TYPE trail_window_close_seconds_max gauge",
            f"trail_window_close_seconds_max {max(closes) if closes else 0.0}",
            "# TYPE trail_model_info gauge",
            f'trail_model_info{{name="{model.name}",version="{model.version}",backend="{model.backend}"}} 1',
        ]
        return "\n".join(lines) + "\n"
