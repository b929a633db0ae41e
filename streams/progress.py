"""Are the worker's streams moving? What ``/health`` reports as ``stalled``.

A worker can look alive (its web views answer) while its streams have stopped: a commit waiting forever, an agent
blocked. Each agent records the offset it has processed per topic partition; a partition with messages waiting
(its end offset is past the processed one) whose position has not moved for ``stall_after_s`` is stalled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Hashable, Mapping

__all__ = ["Progress", "STALL_AFTER_S"]

STALL_AFTER_S = 300.0  # longer than the slowest window the model scores on 2 CPU cores (TRAIL_STALL_AFTER)


@dataclass
class Progress:
    stall_after_s: float = STALL_AFTER_S
    positions: dict[Hashable, int] = field(default_factory=dict)  # topic partition → last offset processed
    moved_at: dict[Hashable, float] = field(default_factory=dict)
    busy_since: float | None = None  # a long step (scoring a window) in progress counts as moving
    started_at: float = field(default_factory=time.monotonic)
    stalled: tuple[Hashable, ...] = ()  # as of the last check

    def processed(self, tp: Hashable, offset: int, now: float | None = None) -> None:
        if offset > self.positions.get(tp, -1):
            self.positions[tp] = offset
            self.moved_at[tp] = time.monotonic() if now is None else now

    def check(self, end_offsets: Mapping[Hashable, int], now: float | None = None) -> tuple[Hashable, ...]:
        """The partitions with waiting messages that have not moved for ``stall_after_s`` (also stored)."""
        now = time.monotonic() if now is None else now
        if self.busy_since is not None and now - self.busy_since < self.stall_after_s:
            self.stalled = ()
            return self.stalled
        self.stalled = tuple(
            tp for tp, end in end_offsets.items()
            if end - 1 > self.positions.get(tp, -1)
            and now - self.moved_at.get(tp, self.started_at) > self.stall_after_s)
        return self.stalled
