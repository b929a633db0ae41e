"""The catalogue agent: item titles and categories from the compacted ``items`` topic, applied by the partition
that owns the item (an entry on another partition is forwarded to the owner over ``<app>-items-rekeyed``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import faust
from faust.types import TP

from trail.events import InvalidEvent, parse_item_meta

from .dead_letter import dead_letter
from .metrics import Metrics
from .offset_holes import HoleFiller
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

    async def run(self, stream: faust.StreamT) -> None:
        async for delivered in stream.events():
            for event in await self.holes.fill([delivered]):
                await self._apply(event)

    async def _apply(self, event: faust.EventT) -> None:
        partition = event.message.partition
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
        self.applied[(event.message.topic, partition)] = event.message.offset
        self.progress.processed(event.message.tp, event.message.offset)

    def forget(self) -> None:
        self.applied.clear()

    async def caught_up(self, partition: int, timeout_s: float = 10.0) -> None:
        """Before a close, let this agent apply every item entry already published for ``partition`` (directly, or
        forwarded by another partition): the topics are consumed concurrently, and a close must not see an item
        without its category just because its catalogue entry is still in flight."""
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
