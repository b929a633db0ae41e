"""A partition's progress in event time, and when it may close a window — with events that arrive re-keyed.

Each partition of ``interactions`` owns the items Kafka's default partitioner (murmur2 of the item id) puts there.
A producer that partitions differently (librdkafka's CRC32, random, round-robin, no key) puts some events on a
partition that does not own their item: that partition forwards them to the owner over the internal re-key topic
(see ``streams.routing``). So a partition's windows are fed by its own input and by every other partition,
and it may close window *w* only when every partition has passed *w* in its own input — otherwise a forwarded
event of *w* could still be on its way.

Every partition therefore tells every other one how far its own input has got: a *mark* ``(first, closable)``,
sent after the events it forwarded up to there (same producer, same re-key partition: they arrive in order). A
partition closes the windows up to the smallest ``closable`` of all marks, its own included. Lateness is judged
where the event entered, against that partition's own input only, so every decision depends on the order of one
Kafka partition and nothing on timing: 1 partition or 3, any partitioner, the same lists as the offline replay of
the same time-ordered events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trail.windows import WindowSpec

__all__ = ["Mark", "PartitionClock"]


@dataclass(frozen=True)
class Mark:
    """How far one partition's own input has got: its first window (None before any counted event) and the highest
    window whose end its watermark has passed."""

    first: int | None
    closable: int

    def merged(self, newer: "Mark") -> "Mark":
        """Marks only move forward (a worker that restarts from an older state may repeat an earlier one)."""
        return Mark(self.first if self.first is not None else newer.first, max(self.closable, newer.closable))

    def to_list(self) -> list[int | None]:
        return [self.first, self.closable]


@dataclass
class PartitionClock:
    """Persisted as the partition's ``c/<partition>`` table value."""

    partition: int
    wm: int | None = None  # latest event time seen in this partition's own input
    own_closable: int | None = None  # highest window its own input has passed: older events entering here are late
    first: int | None = None  # first window its own input counted
    closed: int | None = None  # last window this partition closed
    off: int = -1  # last own-input position seen (offset × positions per message + index in a batch)
    late: int = 0  # late and rejected events of the own input since ``own_closable`` last moved
    rejected: int = 0
    items: int = 0  # items tracked (for TRAIL_MAX_ITEMS)
    forwarded_seen: dict[int, int] = field(default_factory=dict)  # source partition → last forwarded position seen
    marks: dict[int, Mark] = field(default_factory=dict)  # source partition → its latest mark (this one included)
    stats: dict[int, tuple[int, int]] = field(default_factory=dict)  # window → (late, rejected) its report carries

    # -- own input ---------------------------------------------------------------------------------------------
    def is_late(self, window: int) -> bool:
        return self.own_closable is not None and window <= self.own_closable

    def observe(self, ts_ms: int, window: int, spec: WindowSpec) -> bool:
        """An own-input event (counted here or forwarded) at ``ts_ms``; True when ``own_closable`` moved, i.e. the
        other partitions must be sent this partition's new mark (after the events forwarded so far)."""
        self.wm = ts_ms if self.wm is None else max(self.wm, ts_ms)
        moved = False
        if self.first is None and not self.is_late(window):
            self.first = window  # the others must learn it: it decides where every partition starts
            moved = True
            if self.own_closable is None:
                self.own_closable = window - 1
        return self._advance(spec) or moved

    def observe_wall_clock(self, now_ms: int, spec: WindowSpec) -> bool:
        """Live mode: the wall clock is a lower bound of event time on this partition's input."""
        self.wm = now_ms if self.wm is None else max(self.wm, now_ms)
        if self.own_closable is None:
            self.own_closable = spec.last_closable(self.wm)
            self.marks[self.partition] = self.own_mark()
            return True
        return self._advance(spec)

    def _advance(self, spec: WindowSpec) -> bool:
        if self.own_closable is None or self.wm is None:
            return False
        closable = spec.last_closable(self.wm)
        if closable <= self.own_closable:
            own = self.marks.get(self.partition)
            if own is None or own.first != self.first or own.closable != self.own_closable:  # (not per event)
                self.marks[self.partition] = self.own_mark()
            return False
        if self.late or self.rejected:  # reported with the first window this move lets close
            window = self.own_closable + 1
            late, rejected = self.stats.get(window, (0, 0))
            self.stats[window] = (late + self.late, rejected + self.rejected)
            self.late = self.rejected = 0
        self.own_closable = closable
        self.marks[self.partition] = self.own_mark()
        return True

    def own_mark(self) -> Mark:
        assert self.own_closable is not None
        return Mark(self.first, self.own_closable)

    # -- other partitions ---------------------------------------------------------------------------------------
    def receive_mark(self, source: int, mark: Mark) -> None:
        known = self.marks.get(source)
        self.marks[source] = mark if known is None else known.merged(mark)

    def windows_to_close(self, partitions: int) -> range:
        """The windows every partition's input has passed and this one has not closed yet, oldest first."""
        if len(self.marks) < partitions or any(source not in self.marks for source in range(partitions)):
            return range(0)
        through = min(mark.closable for mark in self.marks.values())
        if self.closed is None:
            # Every partition starts at the same window, the earliest any of them counted: so each partition's
            # first window must be known (firsts never change once set, so all partitions compute the same start;
            # a partition that never had an event holds the first close back, as it holds the merger back).
            if any(mark.first is None for mark in self.marks.values()):
                return range(0)
            self.closed = min(mark.first for mark in self.marks.values()) - 1  # type: ignore[type-var]
        return range(self.closed + 1, through + 1)

    def report_stats(self, window: int) -> tuple[int, int]:
        """The late and rejected counts the report of ``window`` carries (taken: a close happens once)."""
        late = rejected = 0
        for index in [w for w in self.stats if w <= window]:
            extra_late, extra_rejected = self.stats.pop(index)
            late, rejected = late + extra_late, rejected + extra_rejected
        return late, rejected

    # -- state -------------------------------------------------------------------------------------------------
    def significant(self) -> tuple[Any, ...]:
        """What must be persisted when it changes (the watermark and offset alone are not: see the worker)."""
        return (self.own_closable, self.first, self.closed, self.late, self.rejected, self.items,
                tuple(sorted((s, m.first, m.closable) for s, m in self.marks.items())), len(self.stats))

    def to_state(self) -> dict[str, Any]:
        return {"wm": self.wm, "own": self.own_closable, "first": self.first, "closed": self.closed, "off": self.off,
                "late": self.late, "rejected": self.rejected, "items": self.items,
                "fwd": {str(s): p for s, p in self.forwarded_seen.items()},
                "marks": {str(s): m.to_list() for s, m in self.marks.items()},
                "stats": {str(w): list(v) for w, v in self.stats.items()}}

    @classmethod
    def from_state(cls, partition: int, state: Mapping[str, Any] | None) -> "PartitionClock":
        if not state:
            return cls(partition)
        return cls(partition, state.get("wm"), state.get("own"), state.get("first"), state.get("closed"),
                   int(state.get("off", -1)), int(state.get("late", 0)), int(state.get("rejected", 0)),
                   int(state.get("items", 0)),
                   {int(s): int(p) for s, p in state.get("fwd", {}).items()},
                   {int(s): Mark(m[0], int(m[1])) for s, m in state.get("marks", {}).items()},
                   {int(w): (int(v[0]), int(v[1])) for w, v in state.get("stats", {}).items()})
