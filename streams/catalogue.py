"""The catalogue agent: item titles and categories from the compacted ``items`` topic, applied by the partition
that owns the item (an entry on another partition is forwarded to the owner over ``<app>-items-rekeyed``).

Before a close whose new items lack their entry, the closing partition catches up (:meth:`Catalogue.caught_up`):
its own ``items`` partition and what was forwarded to it are applied up to their ends, and every ``items``
partition is read straight from the broker for the entries of its items. Waiting for the agent alone was not
enough, for two reasons seen in ``test_three_partitions_over_two_workers_in_batches_equal_one_over_one`` beside a
busy core (2 of 20 runs published a category total short by 21 and 91 events): Faust now and then leaves a message
out mid-stream (the ingest agent's :class:`~streams.offset_holes.HoleFiller` reads such holes back, but ``items`` is
compacted, where gaps are normal, so only an assignment's first message is checked there: an item of that run never
got its category), and an entry still unread on another partition, maybe another worker's, is not forwarded yet.
The straight read resumes where it stopped until the next rebalance, so each entry is read about once per
assignment, and an entry already applied is not written again."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Collection

import faust
from faust.types import TP

from trail.events import InvalidEvent, ItemMeta, parse_item_meta

from .dead_letter import dead_letter
from .metrics import Metrics
from .offset_holes import HoleFiller, read_ranges
from .partition_store import WorkerPartitions
from .progress import Progress
from .topics import WorkerTopics

__all__ = ["Catalogue"]

log = logging.getLogger("trail.worker")


class Catalogue:
    def __init__(self, app: faust.App, topics: WorkerTopics, partitions: WorkerPartitions,
                 owner_of: Callable[[str], int], metrics: Metrics, progress: Progress, holes: HoleFiller) -> None:
        """``holes``: the catalogue's own topics watched for messages Faust did not deliver (a skipped entry would
        leave its item without a category while :meth:`caught_up` believed the partition caught up)."""
        self.app, self.topics, self.partitions, self.owner_of = app, topics, partitions, owner_of
        self.metrics, self.progress, self.holes = metrics, progress, holes
        self.applied: dict[tuple[str, int], int] = {}  # (topic, partition) → offset this agent applied
        # (items partition read, partition whose entries were looked for) → the next offset to read straight from
        # the broker (caught_up); cleared at a rebalance
        self.read_for: dict[tuple[int, int], int] = {}
        self.read_straight = 0  # entries such reads applied that the agent had not

    async def run(self, stream: faust.StreamT) -> None:
        async for delivered in stream.events():
            for event in await self.holes.fill([delivered]):
                await self._apply(event)

    async def _apply(self, event: faust.EventT) -> None:
        partition = event.message.partition
        # a tombstone (null value) is compaction's delete marker, not a malformed entry: nothing to apply, the item
        # keeps the entry it had (windows already counted its category), as the straight read does
        if event.value is not None:
            await self._apply_entry(event, partition)
        self.applied[(event.message.topic, partition)] = event.message.offset
        self.progress.processed(event.message.tp, event.message.offset)

    async def _apply_entry(self, event: faust.EventT, partition: int) -> None:
        try:
            meta = parse_item_meta(event.value)
        except InvalidEvent as exc:
            await dead_letter(self.topics.dlq, event, exc)
            self.metrics.rejected += 1
        else:
            owner = self.owner_of(meta.item_id)
            if owner != partition:
                await self.topics.catalogue_rekey.send(value=bytes(event.value), partition=owner)
                self.metrics.catalogue_forwarded += 1
            else:
                self.partitions.store(partition).set_meta(meta)

    def forget(self) -> None:
        self.applied.clear()
        self.read_for.clear()

    async def caught_up(self, partition: int, timeout_s: float = 10.0) -> None:
        """Before a close, let this agent apply every item entry already published for ``partition`` (directly, or
        forwarded by another partition), then read every ``items`` partition from the broker for its entries: the
        topics are consumed concurrently, and a close must not see an item without its category just because its
        catalogue entry is still in flight, or was left out by Faust (module docstring)."""
        await self._read_items_straight(partition)
        for topic in (self.topics.items.topics[0], self.topics.catalogue_rekey_name):
            tp = TP(topic, partition)
            end = (await self.app.consumer.highwaters(tp)).get(tp) or 0
            key = (topic, partition)
            deadline = time.monotonic() + timeout_s
            while self.applied.get(key, -1) < end - 1:
                if time.monotonic() > deadline:
                    log.warning("catalogue %s of partition %d not caught up (at %s of %d) after %.0f s; closing "
                                "anyway", topic, partition, self.applied.get(key), end - 1, timeout_s)
                    self.applied[key] = end - 1  # e.g. entries applied before a restart: don't wait again
                    break
                await asyncio.sleep(0.02)

    async def _read_items_straight(self, partition: int) -> None:
        """Apply the entries of ``partition``'s items on every ``items`` partition, read from the broker up to the
        log's end (each from where the last read for ``partition`` stopped)."""
        topic, read_for, generation = self.topics.items.topics[0], dict(self.read_for), self.holes.generation()

        def ranges(partitions: Collection[int]) -> dict[int, tuple[int, None]]:
            return {other: (read_for.get((other, partition), 0), None) for other in partitions}

        try:
            read = await asyncio.get_running_loop().run_in_executor(None, read_ranges, self.holes.settings, topic,
                                                                    ranges)
        except Exception as exc:  # noqa: BLE001 - the broker is going away: the agent still applies what it gets
            log.warning("catalogue entries of partition %d not read from the broker (%s)", partition, exc)
            return
        if self.holes.generation() != generation:  # a rebalance meanwhile: the partition may be another's now
            return
        latest: dict[str, ItemMeta] = {}  # an item's entries stay on one partition, in order: the last one counts
        for other, records in read.records.items():
            for _, _, value in records:
                if value is None:  # a tombstone (a deleted entry): nothing to apply
                    continue
                try:
                    meta = parse_item_meta(value)
                except InvalidEvent:  # dead-lettered by the agent that consumes that partition
                    continue
                if self.owner_of(meta.item_id) == partition:
                    latest[meta.item_id] = meta
            self.read_for[(other, partition)] = read.reached[other]
        store = self.partitions.store(partition)
        applied = sum(store.set_meta(meta) for meta in latest.values())
        self.read_straight += applied
        self.metrics.catalogue_read_from_broker += applied
        if applied:
            log.info("catalogue: %d entries of partition %d the agent had not applied, read from the broker", applied,
                     partition)
