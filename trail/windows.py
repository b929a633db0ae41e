"""Event-time tumbling windows: which window an instant falls in, and when a window may close.

Windows are ``[origin + k*size, origin + (k+1)*size)``, numbered by ``k`` (the window index). Weekly windows start
on Monday 00:00 UTC by default (the epoch was a Thursday, so the default origin is 1970-01-05).

Late events. A window closes once the watermark — the latest event time seen minus ``allowed_lateness`` — has
passed its end. An event whose window is already closed is *late*: it is not counted (the published list for
that window is final) and is reported in the next window's ``late`` statistic. Events for windows not yet closed
are counted in their own window, however out of order they arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["WindowSpec", "parse_duration"]

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
MONDAY_1970_01_05_MS = 4 * 86_400_000


def parse_duration(text: str) -> int:
    """``"7d"``, ``"1w"``, ``"6h"``, ``"30m"``, ``"90s"`` → milliseconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match:
        raise ConfigError(f"duration {text!r} is not a number followed by s, m, h, d or w (e.g. 7d, 1h)")
    return int(float(match.group(1)) * _UNITS_MS[match.group(2)])


@dataclass(frozen=True)
class WindowSpec:
    size_ms: int = 7 * 86_400_000
    allowed_lateness_ms: int = 0
    origin_ms: int = MONDAY_1970_01_05_MS

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ConfigError(f"window size must be positive, got {self.size_ms} ms")
        if self.allowed_lateness_ms < 0:
            raise ConfigError(f"allowed lateness must be >= 0, got {self.allowed_lateness_ms} ms")

    @classmethod
    def parse(cls, size: str, allowed_lateness: str = "0s") -> "WindowSpec":
        return cls(parse_duration(size), parse_duration(allowed_lateness))

    def index_of(self, ts_ms: int) -> int:
        return (ts_ms - self.origin_ms) // self.size_ms

    def start_of(self, index: int) -> int:
        return self.origin_ms + index * self.size_ms

    def end_of(self, index: int) -> int:
        return self.start_of(index + 1)

    def last_closable(self, max_event_ts_ms: int) -> int:
        """The highest window index whose end the watermark (``max_event_ts_ms - allowed_lateness``) has reached."""
        return self.index_of(max_event_ts_ms - self.allowed_lateness_ms) - 1
