"""Per-partition trend tracking: apply events to item records, close windows, summarise them — no I/O.

The Faust worker keeps one :class:`ItemRecord` per item in a table (serialised with ``to_state``), and the offline
side (:func:`trail.replay.replay_windows`) keeps them in a dict; both run the same driver
(:mod:`trail.window_driver`) over these functions, so the signals used for training are exactly those the workers
compute.

Exactly-once counting under at-least-once delivery: each record remembers the highest source offset applied to
it (``applied_offset``), stored in the same table value as the counts. A redelivered event carries an offset the
record has already applied and is skipped, so a crash between processing and committing never counts twice.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, MutableMapping, Sequence

from river import sketch

from .events import Interaction, ItemMeta
from .signals import ItemTrend, ItemWindow, PartitionSummary, TrendConfig

__all__ = [
    "Candidate",
    "ItemRecord",
    "OpenWindows",
    "PartitionClose",
    "WindowStats",
    "apply_event",
    "close_partition_window",
    "prerank_order",
    "prerank_score",
    "select_candidates",
]

# River's HyperLogLog with 64 registers (error_rate 0.13): near-exact for the small per-window user counts of most
# items (it switches to linear counting), about 13% error for large ones; a fixed seed keeps runs identical.
_USERS_PROTOTYPE = sketch.NUnique(error_rate=0.13, seed=7)


@dataclass
class OpenWindows:
    """An item's counts in the windows not closed yet, and the last source position applied to them. This is the
    only state an event touches, so it is kept small and separate from the River state.

    ``applied_offset`` is the position of the last event applied from the item's own partition; events another
    partition forwarded (a producer that partitions differently) are positioned in that partition, so each such
    source has its own high-water mark in ``forwarded``."""

    counts: dict[int, float] = field(default_factory=dict)  # window index → weighted count
    users: dict[int, list[int]] = field(default_factory=dict)  # window index → HyperLogLog registers
    applied_offset: int = -1
    forwarded: dict[int, int] = field(default_factory=dict)  # source partition → last position applied from it

    def to_state(self) -> dict[str, Any]:
        state = {"c": {str(w): c for w, c in self.counts.items()}, "u": {str(w): r for w, r in self.users.items()},
                 "off": self.applied_offset}
        if self.forwarded:
            state["fwd"] = {str(source): position for source, position in self.forwarded.items()}
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> "OpenWindows":
        if not state:
            return cls()
        return cls({int(w): float(c) for w, c in state["c"].items()},
                   {int(w): list(r) for w, r in state["u"].items()}, int(state["off"]),
                   {int(source): int(position) for source, position in state.get("fwd", {}).items()})

    def already_applied(self, position: int, source: int | None = None) -> bool:
        if source is None:
            return position <= self.applied_offset
        return position <= self.forwarded.get(source, -1)

    def mark_applied(self, position: int, source: int | None = None) -> None:
        if source is None:
            self.applied_offset = position
        else:
            self.forwarded[source] = position


@dataclass
class ItemRecord:
    """Everything a partition knows about one item."""

    item_id: str
    title: str = ""
    category: str | None = None
    trend: ItemTrend | None = None
    open: OpenWindows = field(default_factory=OpenWindows)
    last: ItemWindow | None = None  # the latest closed window's signals

    @property
    def open_counts(self) -> dict[int, float]:
        return self.open.counts

    @property
    def applied_offset(self) -> int:
        return self.open.applied_offset

    def trend_state(self) -> dict[str, Any] | None:
        """The River state and the last closed window (written at window close only)."""
        if self.trend is None:
            return None
        return {"trend": self.trend.to_state(), "last": _window_to_list(self.last) if self.last else None}

    def to_state(self) -> dict[str, Any]:
        return {"id": self.item_id, "title": self.title, "cat": self.category, "open": self.open.to_state(),
                "trend": self.trend_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: TrendConfig) -> "ItemRecord":
        record = cls(str(state["id"]), str(state.get("title") or ""), state.get("cat"),
                     open=OpenWindows.from_state(state.get("open")))
        record.load_trend(state.get("trend"), config)
        return record

    def load_trend(self, state: Mapping[str, Any] | None, config: TrendConfig) -> None:
        """Restore the River state (it may be some windows behind: :func:`close_item` catches up with zeros)."""
        if not state:
            return
        self.trend = ItemTrend.from_state(config, state["trend"])
        self.last = _window_from_list(state["last"]) if state.get("last") else None

    def closes_counts(self, window_index: int) -> bool:
        """Whether closing ``window_index`` consumes open counts of this record (its own, or late leftovers of
        earlier windows): exactly the records whose stored state a close changes."""
        return any(window <= window_index for window in self.open.counts)


def apply_event(record: ItemRecord | OpenWindows, event: Interaction, window_index: int,
                offset: int | None = None, source: int | None = None) -> bool:
    """Count ``event`` in its window; False (and nothing changes) when its position (``offset``, in the item's own
    partition, or in ``source`` for a forwarded event) was already applied."""
    windows = record.open if isinstance(record, ItemRecord) else record
    if offset is not None:
        if windows.already_applied(offset, source):
            return False
        windows.mark_applied(offset, source)
    windows.counts[window_index] = windows.counts.get(window_index, 0.0) + event.weight
    if event.user_id is not None:
        registers = windows.users.get(window_index)
        if registers is None:
            registers = windows.users[window_index] = [0] * _USERS_PROTOTYPE.n_buckets
        _hll_add(registers, event.user_id)
    return True


def apply_meta(record: ItemRecord, meta: ItemMeta) -> None:
    record.title = meta.title
    record.category = meta.category


def prerank_score(window: ItemWindow) -> float:
    """Cheap candidate ranking: the larger of the item's one-step forecast and its fast mean."""
    return max(window.forecast, window.ewm_fast)


def prerank_order(window: ItemWindow) -> tuple[float, str]:
    """Sort key of the pre-rank, best first; ties by item id, so every run (and every partitioning) agrees."""
    return (-prerank_score(window), window.item_id)


@dataclass(frozen=True)
class Candidate:
    window: ItemWindow
    title: str
    category: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"w": _window_to_list(self.window), "title": self.title, "cat": self.category}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        return cls(_window_from_list(data["w"]), str(data["title"]), data.get("cat"))


@dataclass(frozen=True)
class WindowStats:
    counted: float = 0.0
    events: int = 0
    late: int = 0
    rejected: int = 0
    items_tracked: int = 0

    def __add__(self, other: "WindowStats") -> "WindowStats":
        return WindowStats(self.counted + other.counted, self.events + other.events, self.late + other.late,
                           self.rejected + other.rejected, self.items_tracked + other.items_tracked)


@dataclass(frozen=True)
class PartitionClose:
    """What one partition hands to the merger for one window."""

    summary: PartitionSummary
    candidates: tuple[Candidate, ...]
    windows: tuple[ItemWindow, ...]  # every tracked item's closed window (kept locally, not sent)
    evicted: tuple[str, ...] = ()  # keys of the records removed for being idle too long


def close_partition_window(
    records: MutableMapping[str, ItemRecord],
    window_index: int,
    config: TrendConfig,
    n_candidates: int,
) -> PartitionClose:
    """Close ``window_index`` for every record of a partition (idempotent per record: a record already closed
    past it re-uses its stored signals; one some windows behind catches up with zero counts), evict long-idle
    items, and summarise the window."""
    closed: list[tuple[ItemWindow, str | None]] = []
    candidates: list[Candidate] = []
    evict: list[str] = []
    for key, record in records.items():
        window = close_item(record, window_index, config)
        if window is None:
            continue
        closed.append((window, record.category))
        candidates.append(Candidate(window, record.title, record.category))
        if record.trend is not None and record.trend.evictable and not record.open_counts:
            evict.append(key)
    for key in evict:
        del records[key]
    top = heapq.nsmallest(n_candidates, candidates, key=_candidate_order)
    summary = PartitionSummary.of(window_index, closed, config.board_size)
    return PartitionClose(summary, tuple(top), tuple(w for w, _ in closed), tuple(evict))


def close_item(record: ItemRecord, window_index: int, config: TrendConfig) -> ItemWindow | None:
    """Advance one record to ``window_index``; None when the item has no history yet at that window."""
    if record.trend is None:
        first = min(record.open_counts, default=None)
        if first is None or first > window_index:
            return None
        record.trend = ItemTrend(config, first_window=window_index)
    trend = record.trend
    if trend.last_window >= window_index:  # already closed (a redelivered close after a crash)
        _drop_closed(record.open, trend.last_window)
        return record.last if record.last is not None and record.last.window_index == window_index else None
    for missing in range(trend.last_window + 1, window_index):
        _close_one(record, missing)
    return _close_one(record, window_index)


def _close_one(record: ItemRecord, window_index: int) -> ItemWindow:
    assert record.trend is not None
    count = record.open.counts.pop(window_index, 0.0)
    registers = record.open.users.pop(window_index, None)
    users = _hll_count(registers) if registers else 0
    _drop_closed(record.open, window_index)
    record.last = record.trend.close(record.item_id, window_index, count, users)
    return record.last


def _drop_closed(windows: OpenWindows, closed_through: int) -> None:
    """Counts of windows already closed can no longer count (late leftovers, or a close replayed after a crash)."""
    for stale in [w for w in windows.counts if w <= closed_through]:
        windows.counts.pop(stale)
        windows.users.pop(stale, None)


def _candidate_order(candidate: Candidate) -> tuple[float, str]:
    return prerank_order(candidate.window)


def select_candidates(closes: Iterable[Sequence[Candidate]], n_candidates: int) -> list[Candidate]:
    """The global top ``n_candidates`` by pre-rank score from every partition's own top list (exact: a
    partition's top-N holds all of its members of the global top-N)."""
    return heapq.nsmallest(n_candidates, (c for group in closes for c in group), key=_candidate_order)


# -- helpers -----------------------------------------------------------------------------------------------
_WINDOW_FIELDS = tuple(ItemWindow.__dataclass_fields__)


def _window_to_list(window: ItemWindow) -> list[Any]:
    """The fields in declaration order (spelled out: a generic getattr loop costs ~10 µs per item per close)."""
    w = window
    return [w.item_id, w.window_index, w.count, list(w.history), w.previous_count, w.velocity, w.acceleration,
            w.ewm_fast, w.ewm_slow, w.momentum, w.zscore, w.long_term_mean, w.level_ratio, w.distinct_users,
            w.age_windows, w.forecast, w.idle_windows]


def _window_from_list(values: Sequence[Any]) -> ItemWindow:
    if len(values) != len(_WINDOW_FIELDS):
        raise ValueError(f"a stored window has {len(values)} fields, expected {len(_WINDOW_FIELDS)}")
    fields = list(values)
    fields[3] = tuple(float(x) for x in fields[3])
    return ItemWindow(*fields)


def _users_sketch(registers: list[int]) -> sketch.NUnique:
    """River's HyperLogLog (``sketch.NUnique``) over the given registers (shared, so updates land in them).
    The prototype is built once: ``NUnique.__init__`` seeds numpy's RNG, too slow to do per event."""
    view = sketch.NUnique.__new__(sketch.NUnique)
    view.__dict__.update(_USERS_PROTOTYPE.__dict__)
    view.buckets = registers
    return view


def _hll_add(registers: list[int], user_id: str) -> None:
    _users_sketch(registers).update(user_id)


# River's ``NUnique.get`` estimate, restated over plain lists: River's version spends ~35 µs per call in a generator
# of 64 float divisions, paid for every item with events at every window close. Same formula, same order of
# summation, so the same numbers (tests/test_signals.py checks it against River on random registers).
_INVERSE_POWERS = tuple(1.0 / (1 << x) for x in range(65))
_HLL_ALPHA = {16: 0.673, 32: 0.697, 64: 0.709}.get(_USERS_PROTOTYPE.n_buckets,
                                                   0.7213 / (1 + 1.079 / _USERS_PROTOTYPE.n_buckets))
_P32 = sketch.NUnique.P32


def _hll_count(registers: list[int]) -> int:
    buckets = len(registers)
    estimate = _HLL_ALPHA * buckets * buckets / sum(map(_INVERSE_POWERS.__getitem__, registers))
    if estimate <= buckets * 2.5:
        empty = registers.count(0)
        return int(buckets * math.log(float(buckets) / empty) if empty else estimate)
    return int(estimate if estimate < _P32 / 30 else -_P32 * math.log(1 - estimate / _P32))
