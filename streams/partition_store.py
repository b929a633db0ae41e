"""A worker's partitions over the one ``state`` table: typed access to each partition's keys, and the records it
keeps in memory.

:class:`PartitionStore` is the :class:`trail.window_driver.RecordStore` of one partition in the worker: open
counts (``o/``), trend state (``b/`` buckets, ``t/`` keys of older workers), catalogue entries (``m/``) and the
partition clock (``c/``), key layout in :mod:`streams.state_keys`. After its first close a partition's item
records are *resident*: read from the table once, then kept current by the ingest and catalogue agents, so a close
does not scan the table; a close rewrites only the buckets holding an item that had events in the closed window
(or was evicted). An idle item's state is a deterministic function of its stored state and the windows since
(zeros), so after a restart :func:`trail.tracker.close_item` catches it up; counts a close consumed stay in ``o/``
until the item's next event rewrites it and are dropped on load, because the stored trend is already past their
window.

:class:`WorkerPartitions` holds a store and a driver per partition this worker was given, and forgets them all
when partitions are revoked: another worker may own them next, so everything is read from the table again.
"""

from __future__ import annotations

from typing import Any, Callable, MutableMapping, Sequence

from trail.events import ItemMeta
from trail.partition_clock import PartitionClock
from trail.signals import TrendConfig
from trail.tracker import ItemRecord, OpenWindows
from trail.window_driver import DriverSettings, IngestCounters, PartitionDriver

from .state_keys import (clock_key, legacy_trend_key, meta_key, open_key, parse_key, trend_bucket,
                         trend_bucket_key)

__all__ = ["PartitionStore", "WorkerPartitions"]

Table = MutableMapping[str, Any]  # the Faust table (a dict in unit tests)


class PartitionStore:
    """One partition's share of the ``state`` table (implements :class:`trail.window_driver.RecordStore`)."""

    def __init__(self, table: Table, partition: int, trend: TrendConfig) -> None:
        self.table, self.partition, self.trend = table, partition, trend
        self.resident: dict[str, ItemRecord] | None = None  # every record, once the first close has read them
        self.touched: dict[str, OpenWindows] = {}  # open windows looked up since the last flush
        self.arrived: set[str] = set()  # items that became resident since the last close
        self.bucket_members: dict[int, set[str]] = {}  # bucket → items with a trend state there (read once each)
        self.legacy_items: set[str] = set()  # items whose trend state is still in a ``t/`` key

    # -- clock and catalogue ----------------------------------------------------------------------------------
    def load_clock(self) -> PartitionClock:
        return PartitionClock.from_state(self.partition, self.table.get(clock_key(self.partition)))

    def save_clock(self, clock: PartitionClock) -> None:
        self.table[clock_key(self.partition)] = clock.to_state()

    def meta(self, item_id: str) -> dict[str, Any]:
        return self.table.get(meta_key(self.partition, item_id)) or {}

    def set_meta(self, meta: ItemMeta) -> bool:
        """Store an item's catalogue entry; False (nothing written) if it is the one stored already."""
        key, entry = meta_key(self.partition, meta.item_id), {"title": meta.title, "cat": meta.category}
        if self.table.get(key) == entry:
            return False
        self.table[key] = entry
        record = self.resident.get(meta.item_id) if self.resident is not None else None
        if record is not None:
            record.title, record.category = meta.title, meta.category
        return True

    # -- open counts ------------------------------------------------------------------------------------------
    def lookup(self, item_id: str) -> OpenWindows | None:
        windows = self.touched.get(item_id)
        if windows is not None:
            return windows
        record = self.resident.get(item_id) if self.resident is not None else None
        # a resident partition holds every record it has: an item missing there has no open counts stored
        stored = None if self.resident is not None else self.table.get(open_key(self.partition, item_id))
        if record is None and stored is None and not self._tracked(item_id):
            return None
        if record is not None:
            self.touched[item_id] = record.open  # the resident record sees the event too
            return record.open
        return self._start(item_id, stored)

    def add(self, item_id: str) -> OpenWindows:
        return self._start(item_id, None)

    def _start(self, item_id: str, stored: Any) -> OpenWindows:
        windows = self.touched[item_id] = OpenWindows.from_state(stored)
        if self.resident is not None:  # a new item of a resident partition
            meta = self.meta(item_id)
            self.resident[item_id] = ItemRecord(item_id, meta.get("title", ""), meta.get("cat"), open=windows)
            self.arrived.add(item_id)
        return windows

    def flush(self) -> None:
        for item_id, windows in self.touched.items():
            self.table[open_key(self.partition, item_id)] = windows.to_state()
        self.touched.clear()

    def _tracked(self, item_id: str) -> bool:
        """Whether the partition already tracks ``item_id`` (before its records are resident: from the table)."""
        if self.resident is not None and item_id in self.resident:
            return True
        bucket = trend_bucket(item_id)
        members = self.bucket_members.get(bucket)
        if members is None:  # each bucket read and decoded once per assignment
            stored = self.table.get(trend_bucket_key(self.partition, bucket))
            members = self.bucket_members[bucket] = set(stored or ())
        return item_id in members or legacy_trend_key(self.partition, item_id) in self.table

    # -- window close -----------------------------------------------------------------------------------------
    def records(self) -> MutableMapping[str, ItemRecord]:
        if self.resident is None:
            self.resident = self._load()
            self.arrived = set(self.resident)
        return self.resident

    def newcomers_lack_catalogue(self) -> bool:
        """(The catalogue agent updates resident records as it applies entries, so items checked at an earlier
        close need no wait.)"""
        arrived, self.arrived = self.arrived, set()
        records = self.resident or {}
        return any(not record.title and record.category is None
                   for record in (records.get(item_id) for item_id in arrived) if record is not None)

    def save_close(self, records: MutableMapping[str, ItemRecord], changed: Sequence[str],
                   evicted: Sequence[str]) -> None:
        for item_id in evicted:  # idle for too long
            if open_key(self.partition, item_id) in self.table:
                del self.table[open_key(self.partition, item_id)]
        self._write_trend_buckets(records, {trend_bucket(item_id) for item_id in (*changed, *evicted)})

    def _write_trend_buckets(self, records: MutableMapping[str, ItemRecord], buckets: set[int]) -> None:
        """Rewrite each bucket in ``buckets`` whole, from the resident records (an idle item's state, advanced in
        memory, describes itself: its last window is in it). Per-item keys of older workers in these buckets are
        deleted after their bucket is written, so a recovered prefix always has every item's latest state."""
        if not buckets:
            return
        contents: dict[int, dict[str, Any]] = {bucket: {} for bucket in buckets}
        for item_id, record in records.items():
            bucket = contents.get(trend_bucket(item_id))
            if bucket is not None and record.trend is not None:
                bucket[item_id] = record.trend_state()
        for bucket, items in contents.items():
            self.table[trend_bucket_key(self.partition, bucket)] = items
            self.bucket_members[bucket] = set(items)
        for item_id in [i for i in self.legacy_items if trend_bucket(i) in buckets]:
            if legacy_trend_key(self.partition, item_id) in self.table:
                del self.table[legacy_trend_key(self.partition, item_id)]
            self.legacy_items.discard(item_id)

    def _load(self) -> dict[str, ItemRecord]:
        """Every item record of the partition, from the table (once per assignment)."""
        parts: dict[str, dict[str, Any]] = {"o": {}, "t": {}, "m": {}}
        buckets: dict[str, Any] = {}
        for key, value in list(self.table.items()):
            kind, owner, name = parse_key(key)
            if owner != str(self.partition) or value is None:
                continue
            if kind == "b":
                buckets.update(value)
            elif kind in parts:
                parts[kind][name] = value
        self.legacy_items = set(parts["t"])
        parts["t"].update(buckets)  # a bucket written after an item's legacy key holds its newer state
        records: dict[str, ItemRecord] = {}
        for item_id in parts["o"].keys() | parts["t"].keys():
            meta = parts["m"].get(item_id, {})
            record = ItemRecord(item_id, meta.get("title", ""), meta.get("cat"),
                                open=OpenWindows.from_state(parts["o"].get(item_id)))
            record.load_trend(parts["t"].get(item_id), self.trend)
            records[item_id] = record
        return records


class WorkerPartitions:
    """The partitions this worker was given: a store and a driver each, made on first use."""

    def __init__(self, table: Table, settings: DriverSettings, owner_of: Callable[[str], int],
                 counters: IngestCounters) -> None:
        self.table, self.settings, self.owner_of, self.counters = table, settings, owner_of, counters
        self._stores: dict[int, PartitionStore] = {}
        self._drivers: dict[int, PartitionDriver] = {}

    def store(self, partition: int) -> PartitionStore:
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = PartitionStore(self.table, partition, self.settings.trend)
        return store

    def driver(self, partition: int) -> PartitionDriver:
        driver = self._drivers.get(partition)
        if driver is None:
            store = self.store(partition)
            driver = self._drivers[partition] = PartitionDriver(partition, store.load_clock(), store, self.settings,
                                                                self.owner_of, self.counters)
        return driver

    def forget(self) -> None:
        """Partitions were revoked: another worker may own them next, so re-read everything afterwards."""
        self._stores.clear()
        self._drivers.clear()
