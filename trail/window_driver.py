"""One partition's input → counted events, rejects, marks and closed windows: the driver the Faust worker and the
offline replay share, so "the signals used for training are the ones the workers compute" holds by construction.

No I/O. The caller feeds a partition's input in order — its own events (:meth:`PartitionDriver.own_message`),
events other partitions forwarded to it (:meth:`~PartitionDriver.forwarded`), other partitions' marks
(:meth:`~PartitionDriver.mark`), wall-clock ticks (:meth:`~PartitionDriver.tick`) — and carries out each *effect*
the driver yields before asking for the next one. An effect is a point where the worker must hear the broker's
acknowledgement before the state that depends on it is written (a dead letter before the clock counts the event
as done, forwarded events and the mark before the moved clock, a window's report before the clock records the
close); the driver writes that state, through its :class:`RecordStore`, only when it is resumed. The offline
replay (:func:`trail.replay.replay_windows`) runs the same driver over an in-memory store, one partition.

Lateness, window starts and closes follow :class:`trail.partition_clock.PartitionClock`; counting and closing
follow :mod:`trail.tracker`.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from typing import Callable, Iterator, MutableMapping, Protocol, Sequence, Union

from .events import Interaction, InvalidEvent
from .partition_clock import Mark, PartitionClock
from .signals import TrendConfig
from .tracker import ItemRecord, OpenWindows, PartitionClose, WindowStats, apply_event, close_partition_window
from .windows import WindowSpec

__all__ = ["AwaitCatalogue", "CloseTimings", "DriverSettings", "Effect", "Forward", "ForwardedEvent",
           "IngestCounters", "PartitionDriver", "RecordStore", "Reject", "SendMark", "WindowClosed", "gc_paused"]

ForwardedEvent = tuple[int, Interaction]  # (position in the partition it entered, the event)


# -- effects: what the caller carries out --------------------------------------------------------------------
@dataclass(frozen=True)
class Reject:
    """An event refused here, for the dead-letter topic. ``batch_index``: its index in a batched own message;
    ``forwarded``: (source partition, position there) for an event another partition forwarded."""

    error: InvalidEvent
    batch_index: int | None = None
    forwarded: tuple[int, int, Interaction] | None = None


@dataclass(frozen=True)
class Forward:
    """Events of items other partitions own (owner → events, in order); sent, not waited for."""

    events: dict[int, list[ForwardedEvent]]


@dataclass(frozen=True)
class SendMark:
    """The events forwarded so far, then this partition's new mark to every other partition: all acknowledged
    before the driver goes on (the moved clock judges older events late, so a lost mark is never re-sent)."""

    events: dict[int, list[ForwardedEvent]]
    mark: Mark


@dataclass(frozen=True)
class AwaitCatalogue:
    """Items new since the last close lack their catalogue entry: let the catalogue catch up before closing."""


@dataclass(frozen=True)
class CloseTimings:
    started: float  # time.monotonic() when the close began (the caller adds the report's acknowledgement)
    load_s: float
    trend_s: float
    write_s: float

    @property
    def total_s(self) -> float:
        return self.load_s + self.trend_s + self.write_s


@dataclass(frozen=True)
class WindowClosed:
    """A closed window: the caller publishes its report (acknowledged) before the clock records the close."""

    partition: int
    index: int
    close: PartitionClose
    stats: WindowStats
    timings: CloseTimings


Effect = Union[Reject, Forward, SendMark, AwaitCatalogue, WindowClosed]


# -- what the driver needs around it -------------------------------------------------------------------------
class RecordStore(Protocol):
    """Where one partition's item records live: a dict offline, the worker's table (streams.partition_store)."""

    def lookup(self, item_id: str) -> OpenWindows | None:
        """The open windows an event of a tracked item is counted in (None: the item is not tracked yet)."""

    def add(self, item_id: str) -> OpenWindows:
        """Start tracking ``item_id``: its (empty) open windows."""

    def flush(self) -> None:
        """Persist the open windows looked up or added since the last flush."""

    def records(self) -> MutableMapping[str, ItemRecord]:
        """Every record of the partition, for a close (a close mutates them in place and evicts some)."""

    def newcomers_lack_catalogue(self) -> bool:
        """Whether an item that arrived since the last close has neither title nor category yet."""

    def save_close(self, records: MutableMapping[str, ItemRecord], changed: Sequence[str],
                   evicted: Sequence[str]) -> None:
        """Persist a close: the trend state of ``changed`` and ``evicted`` items (their stored state moved)."""

    def save_clock(self, clock: PartitionClock) -> None:
        """Persist the partition clock."""


@dataclass
class IngestCounters:
    """Event counters shared by a worker's drivers (the worker's ``/metrics`` extends them)."""

    events: int = 0  # counted (a redelivered copy is not)
    direct: int = 0  # counted by the partition they arrived on
    rejected: int = 0
    late: int = 0
    forwarded_out: int = 0
    forwarded_in: int = 0


@dataclass(frozen=True)
class DriverSettings:
    spec: WindowSpec
    trend: TrendConfig
    n_candidates: int
    partitions: int = 1
    max_items: int | None = None  # TRAIL_MAX_ITEMS: events of new items beyond it are rejected


def _item_limit_error(partition: int, max_items: int) -> InvalidEvent:
    return InvalidEvent("item_limit", f"partition {partition} already tracks {max_items} items "
                        "(TRAIL_MAX_ITEMS): events of new items are refused")


class PartitionDriver:
    """One partition: its clock, its store, and the events other partitions must be forwarded."""

    def __init__(self, partition: int, clock: PartitionClock, store: RecordStore, settings: DriverSettings,
                 owner_of: Callable[[str], int] | None = None, counters: IngestCounters | None = None) -> None:
        self.partition, self.clock, self.store, self.settings = partition, clock, store, settings
        self.owner_of = owner_of or (lambda item_id: partition)
        self.counters = counters if counters is not None else IngestCounters()
        self.outbox: dict[int, list[ForwardedEvent]] = {}
        # a clock loaded with a mark: the mark sent before a crash may not have reached the others (marks merge as
        # a maximum, so repeating one is harmless): say it again before anything else
        self._remark = clock.own_closable is not None
        self._persisted = clock.significant()

    # -- a batch of input -----------------------------------------------------------------------------------
    def begin(self) -> Iterator[Effect]:
        """Before a batch of this partition's input."""
        if self._remark:
            self._remark = False
            yield from self._send_mark()

    def end(self) -> Iterator[Effect]:
        """After a batch: open windows written, forwarded events sent, the clock written if it moved in a way that
        matters (a write per event would halve the speed; the watermark and offset alone are recovered)."""
        self.store.flush()
        if self.outbox:
            yield Forward(self._take_outbox())
        if self.clock.significant() != self._persisted:
            self._save_clock()

    # -- input ----------------------------------------------------------------------------------------------
    def own_message(self, first_position: int, results: Sequence[Interaction | InvalidEvent]) -> Iterator[Effect]:
        """One message of the partition's own input: one event, or a batch of them numbered from
        ``first_position`` (a position already seen is a redelivered copy: not counted again)."""
        clock, spec, counters = self.clock, self.settings.spec, self.counters
        batched = len(results) > 1
        for index, interaction in enumerate(results):
            position = first_position + index
            fresh = position > clock.off
            batch_index = index if batched else None
            if isinstance(interaction, InvalidEvent):
                if fresh:
                    yield Reject(interaction, batch_index)
                    counters.rejected += 1
                    clock.rejected += 1
                    clock.off = position
                    self._save_clock()
                continue
            window = spec.index_of(interaction.ts_ms)
            if clock.is_late(window):
                if fresh:
                    clock.late += 1
                    counters.late += 1
            else:
                owner = self.owner_of(interaction.item_id)
                if owner == self.partition:
                    refused = self._count(interaction, window, position, None, fresh, batch_index)
                    if refused is not None:
                        yield refused
                        self._rejected()
                else:  # (re-sent after a crash too: the owner drops what it already applied)
                    self.outbox.setdefault(owner, []).append((position, interaction))
                    counters.forwarded_out += fresh
            clock.off = max(position, clock.off)
            if clock.observe(interaction.ts_ms, window, spec):
                self.store.flush()
                yield from self._send_mark()
                yield from self._close_ready()

    def forwarded(self, source: int, events: Sequence[ForwardedEvent]) -> Iterator[Effect]:
        """Events partition ``source`` received for items this one owns."""
        clock = self.clock
        self.counters.forwarded_in += len(events)
        for position, interaction in events:
            fresh = position > clock.forwarded_seen.get(source, -1)
            window = self.settings.spec.index_of(interaction.ts_ms)
            if clock.closed is not None and window <= clock.closed:
                continue  # a copy re-sent after the source restarted: the window it counted in is already closed
            refused = self._count(interaction, window, position, source, fresh, None)
            if refused is not None:
                yield refused
                self._rejected()
            if fresh:
                clock.forwarded_seen[source] = position

    def mark(self, source: int, mark: Mark) -> Iterator[Effect]:
        """Partition ``source``'s input has got this far."""
        self.store.flush()
        self.clock.receive_mark(source, mark)
        yield from self._close_ready()

    def tick(self, now_ms: int) -> Iterator[Effect]:
        """Live mode: the wall clock moves this partition's watermark too."""
        self.store.flush()
        if self.clock.observe_wall_clock(now_ms, self.settings.spec):
            yield from self._send_mark()
        yield from self._close_ready()

    # -- steps ----------------------------------------------------------------------------------------------
    def _count(self, interaction: Interaction, window: int, position: int, source: int | None, fresh: bool,
               batch_index: int | None) -> Reject | None:
        """Count an event of an item this partition owns (``source``: the partition it was forwarded from); the
        dead letter to send when it is a fresh event of a new item beyond the item limit. (A plain function, not a
        generator: it runs once per event, and a generator object per event costs more than the counting.)"""
        windows = self.store.lookup(interaction.item_id)
        if windows is None:
            limit = self.settings.max_items
            if limit is not None and self.clock.items >= limit:
                if not fresh:
                    return None
                forwarded = (source, position, interaction) if source is not None else None
                return Reject(_item_limit_error(self.partition, limit), batch_index, forwarded)
            self.clock.items += 1
            windows = self.store.add(interaction.item_id)
        if apply_event(windows, interaction, window, position, source):
            self.counters.events += 1
            self.counters.direct += source is None
        return None

    def _rejected(self) -> None:
        """A dead letter for an event of a new item was acknowledged: count the rejection."""
        self.counters.rejected += 1
        self.clock.rejected += 1

    def _take_outbox(self) -> dict[int, list[ForwardedEvent]]:
        outbox, self.outbox = self.outbox, {}
        return outbox

    def _send_mark(self) -> Iterator[Effect]:
        yield SendMark(self._take_outbox(), self.clock.own_mark())

    def _close_ready(self) -> Iterator[Effect]:
        windows = self.clock.windows_to_close(self.settings.partitions)
        if windows:
            self.store.flush()
            for index in windows:
                yield from self._close(index)

    def _close(self, index: int) -> Iterator[Effect]:
        started = time.monotonic()
        records = self.store.records()
        loaded = time.monotonic()
        if self.store.newcomers_lack_catalogue():
            yield AwaitCatalogue()
        changed = [item_id for item_id, record in records.items() if record.closes_counts(index)]
        with gc_paused():
            result = close_partition_window(records, index, self.settings.trend, self.settings.n_candidates)
            advanced = time.monotonic()
            self.store.save_close(records, changed, result.evicted)
        written = time.monotonic()
        late, rejected = self.clock.report_stats(index)
        stats = WindowStats(counted=sum(w.count for w in result.windows), late=late, rejected=rejected,
                            items_tracked=len(result.windows))
        yield WindowClosed(self.partition, index, result, stats,
                           CloseTimings(started, loaded - started, advanced - loaded, written - advanced))
        self.clock.closed = index
        self.clock.items = len(result.windows)
        self._save_clock()

    def _save_clock(self) -> None:
        self.store.save_clock(self.clock)
        self._persisted = self.clock.significant()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a window close. A close allocates several objects per tracked item,
    none of them cyclic; with hundreds of thousands of long-lived objects in the process each automatic
    collection walks them all, which made a close several times slower than the work it does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
