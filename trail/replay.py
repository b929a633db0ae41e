"""The offline side of the stream: a whole dataset's events through the worker's own driver, in memory.

:func:`replay_windows` is what training, evaluation and the worker tests compare against: the events run through
:class:`trail.window_driver.PartitionDriver` exactly as one worker holding every item runs them (one partition,
so no forwarding and no marks from others), over an in-memory :class:`MemoryStore` instead of the worker's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator, MutableMapping, Sequence

from .events import Interaction, ItemMeta
from .partition_clock import PartitionClock
from .signals import TrendConfig, TrendSignals, WindowBoard, signals_for
from .tracker import ItemRecord, OpenWindows, WindowStats, apply_meta
from .window_driver import DriverSettings, PartitionDriver, WindowClosed
from .windows import WindowSpec

__all__ = ["ClosedWindow", "MemoryStore", "replay_windows"]

REPLAY_CHUNK = 1024  # events per driver call (positions run on across chunks, as offsets do in a partition)


@dataclass
class MemoryStore:
    """A partition's records in a dict; nothing to persist (the replay starts from the first event every time)."""

    catalogue: dict[str, ItemMeta] = field(default_factory=dict)
    items: dict[str, ItemRecord] = field(default_factory=dict)

    def lookup(self, item_id: str) -> OpenWindows | None:
        record = self.items.get(item_id)
        return record.open if record is not None else None

    def add(self, item_id: str) -> OpenWindows:
        record = self.items[item_id] = ItemRecord(item_id)
        meta = self.catalogue.get(item_id)
        if meta is not None:
            apply_meta(record, meta)
        return record.open

    def flush(self) -> None:
        pass

    def records(self) -> MutableMapping[str, ItemRecord]:
        return self.items

    def newcomers_lack_catalogue(self) -> bool:
        return False  # the whole catalogue is known up front

    def save_close(self, records: MutableMapping[str, ItemRecord], changed: Sequence[str],
                   evicted: Sequence[str]) -> None:
        pass

    def save_clock(self, clock: PartitionClock) -> None:
        pass


@dataclass(frozen=True)
class ClosedWindow:
    index: int
    signals: tuple[TrendSignals, ...]  # every tracked item, sorted by item id
    candidates: tuple[TrendSignals, ...]  # the pre-ranked candidates, best first
    stats: WindowStats


def replay_windows(
    interactions: Iterable[Interaction],
    spec: WindowSpec,
    config: TrendConfig = TrendConfig(),
    items: Iterable[ItemMeta] = (),
    n_candidates: int = 200,
) -> Iterator[ClosedWindow]:
    """Run events through the worker's driver as one worker holding every item would, yielding each closed window
    (windows after the last event stay open, as they would in the stream)."""
    store = MemoryStore({meta.item_id: meta for meta in items})
    driver = PartitionDriver(0, PartitionClock(0), store, DriverSettings(spec, config, n_candidates))
    board = WindowBoard(board_size=config.board_size)
    position = 0
    for chunk in _chunks(interactions, REPLAY_CHUNK):  # events fed as batched messages: same result, less overhead
        for effect in driver.own_message(position, chunk):
            if isinstance(effect, WindowClosed):
                yield _closed_window(effect, store.items, board, spec)
        position += len(chunk)


def _chunks(events: Iterable[Interaction], size: int) -> Iterator[list[Interaction]]:
    iterator = iter(events)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _closed_window(closed: WindowClosed, records: MutableMapping[str, ItemRecord], board: WindowBoard,
                   spec: WindowSpec) -> ClosedWindow:
    """The signals of every item of a closed window, ranked on the board the merger would build."""
    result = closed.close
    board.close(closed.index, [result.summary])
    signals = {}
    for window in result.windows:
        record = records.get(window.item_id)
        title, category = (record.title, record.category) if record is not None else ("", None)
        signals[window.item_id] = signals_for(window, board, title, category, spec=spec)
    return ClosedWindow(
        closed.index,
        tuple(signals[item_id] for item_id in sorted(signals)),
        tuple(signals[c.window.item_id] for c in result.candidates),
        closed.stats,
    )
