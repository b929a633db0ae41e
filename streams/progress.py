"""Are the worker's streams moving? What ``/health`` reports as ``stalled``.

A worker can look alive (its web views answer) while its streams have stopped: a commit waiting forever, an agent
blocked. Each agent records the offset it has processed per topic partition; a partition with messages waiting
(its end offset is past the processed one) whose position has not moved for ``stall_after_s`` is stalled. A
partition first seen by the check counts as processed up to its end then (history before a restart is not
waiting work), so a worker that is stuck from the start shows as stalled once new messages arrive.
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
    waiting_since: dict[Hashable, float] = field(default_factory=dict)  # when messages were first seen waiting
    busy_since: float | None = None  # a long step (scoring a window) in progress counts as moving
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
        for tp, end in end_offsets.items():
            if tp not in self.positions:  # first sight (after a start or an assignment): what is there counts
                self.positions[tp], self.moved_at[tp] = end - 1, now  # as processed; new messages must move it
            if end - 1 > self.positions[tp]:
                self.waiting_since.setdefault(tp, now)
            else:
                self.waiting_since.pop(tp, None)
        self.stalled = tuple(
            tp for tp, since in self.waiting_since.items()
            if tp in end_offsets and now - max(since, self.moved_at[tp]) > self.stall_after_s)
        return self.stalled

    def forget(self) -> None:
        """After a rebalance: positions of partitions this worker may no longer hold mean nothing."""
        self.positions.clear()
        self.moved_at.clear()
        self.waiting_since.clear()
