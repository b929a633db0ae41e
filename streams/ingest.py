"""The ingest agent: the partition's input fed to its driver, and the driver's effects carried out on the broker.

One stream carries a partition's own ``interactions``, the events and marks other partitions sent it over
``<app>-rekeyed`` and, in live mode, its wall-clock ticks (all co-partitioned). Each batch Faust hands over is
split by partition; each partition's share goes to its :class:`trail.window_driver.PartitionDriver`, and every
effect the driver yields is carried out — and, where the driver's next state write depends on it, acknowledged by
the broker — before the driver is resumed. All counting, lateness and closing logic is in the driver, which the
offline replay runs too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, Iterator

import faust
from faust.streams import _current_event

from trail.events import POSITIONS_PER_MESSAGE, InvalidEvent, parse_interactions
from trail.window_driver import (AwaitCatalogue, Effect, Forward, ForwardedEvent, PartitionDriver, Reject, SendMark,
                                 WindowClosed)

from .catalogue import Catalogue
from .config import WorkerConfig
from .dead_letter import dead_letter, dead_letter_raw
from .merge import PartitionReport
from .metrics import Metrics
from .offset_holes import HoleFiller
from .partition_store import WorkerPartitions
from .progress import Progress
from .routing import Forwarded, forward_messages, mark_message, parse_rekeyed
from .topics import WorkerTopics

__all__ = ["Ingest"]

log = logging.getLogger("trail.worker")


class Ingest:
    def __init__(self, config: WorkerConfig, topics: WorkerTopics, partitions: WorkerPartitions,
                 catalogue: Catalogue, metrics: Metrics, progress: Progress, holes: HoleFiller) -> None:
        self.config, self.topics, self.partitions, self.catalogue = config, topics, partitions, catalogue
        self.metrics, self.progress, self.holes = metrics, progress, holes

    async def run(self, stream: faust.StreamT) -> None:
        """Events in batches: each item's open-window record is read and written once per batch, not per event."""
        async for batch in stream.take_events(self.config.batch_size, within=0.2):
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in await self.holes.fill(batch):
                by_partition.setdefault(event.message.partition, []).append(event)
                self.progress.processed(event.message.tp, event.message.offset)
            self.metrics.offset_holes, self.metrics.read_back = self.holes.holes, self.holes.read_back
            self.metrics.stale_dropped = self.holes.stale
            for partition, events in by_partition.items():
                # Table writes go to the changelog partition of "the current event"; in a batch that is the last
                # event of the whole batch, so point it at this partition's events before writing.
                _current_event.set(weakref.ref(events[-1]))
                await self.feed(self.partitions.driver(partition), events)

    async def feed(self, driver: PartitionDriver, events: list[Any]) -> None:
        """One partition's share of a batch, in order."""
        await self._carry_out(driver, driver.begin(), events[0])
        for event in events:
            await self._carry_out(driver, self._steps(driver, event), event)
        await self._carry_out(driver, driver.end(), events[-1])

    def _steps(self, driver: PartitionDriver, event: Any) -> Iterator[Effect]:
        topic = event.message.topic
        if topic == self.topics.ticks_name:
            return driver.tick(json.loads(event.value)["now_ms"])
        if topic == self.topics.rekey_name:
            message = parse_rekeyed(json.loads(event.value))
            if isinstance(message, Forwarded):
                return driver.forwarded(message.source, message.events)
            return driver.mark(*message)
        try:
            results = parse_interactions(event.value)
        except InvalidEvent as exc:  # the message as a whole is unreadable
            results = [exc]
        # a batch's events share the message's offset: they are numbered within it
        return driver.own_message(event.message.offset * POSITIONS_PER_MESSAGE, results)

    async def _carry_out(self, driver: PartitionDriver, effects: Iterator[Effect], event: Any) -> None:
        for effect in effects:
            if isinstance(effect, Reject):
                await self._reject(effect, event)
            elif isinstance(effect, Forward):
                await self._forward(driver.partition, effect.events)
            elif isinstance(effect, SendMark):
                await self._send_mark(driver, effect)
            elif isinstance(effect, AwaitCatalogue):
                await self.catalogue.caught_up(driver.partition)
            elif isinstance(effect, WindowClosed):
                await self._report(effect)

    async def _reject(self, effect: Reject, event: Any) -> None:
        if effect.forwarded is None:
            await dead_letter(self.topics.dlq, event, effect.error, effect.batch_index)
            return
        source, position, interaction = effect.forwarded
        origin = {"topic": self.config.topics.interactions, "partition": source,
                  "offset": position // POSITIONS_PER_MESSAGE, "batch_index": position % POSITIONS_PER_MESSAGE}
        await dead_letter_raw(self.topics.dlq, interaction.to_json(), effect.error, origin)

    async def _forward(self, partition: int, events: dict[int, list[ForwardedEvent]]) -> list[Any]:
        """Send events to the partitions owning their items; returns the sends' delivery futures."""
        return [await self.topics.rekey.send(value=message, partition=owner) for owner, forwarded in events.items()
                for message in forward_messages(partition, forwarded)]

    async def _send_mark(self, driver: PartitionDriver, effect: SendMark) -> None:
        """The events forwarded up to here, then the new mark to every other partition — acknowledged before the
        moved clock can be written: the clock judges older events late from now on, so a redelivered event would
        no longer be forwarded, and a mark lost after the clock is stored would never be re-sent."""
        sent = await self._forward(driver.partition, effect.events)
        mark = mark_message(driver.partition, effect.mark)
        sent += [await self.topics.rekey.send(value=mark, partition=other)
                 for other in range(driver.settings.partitions) if other != driver.partition]
        await asyncio.gather(*sent)

    async def _report(self, closed: WindowClosed) -> None:
        """The partition's report of a closed window, acknowledged before the clock records the close: a report
        lost after that would block the merger."""
        result, stats, timings = closed.close, closed.stats, closed.timings
        report = PartitionReport(closed.partition, result.summary, result.candidates, stats, int(time.time() * 1000))
        await (await self.topics.summaries.send(key=str(closed.partition).encode(), value=report.to_dict()))
        elapsed = time.monotonic() - timings.started
        self.metrics.items_tracked[closed.partition] = stats.items_tracked
        self.metrics.windows_closed += 1
        self.metrics.close_seconds.append(elapsed)
        log.info("partition %d closed window %d: %d items, %.0f events in %.3f s (load %.3f, trend %.3f, "
                 "write %.3f)", closed.partition, closed.index, stats.items_tracked, stats.counted, elapsed,
                 timings.load_s, timings.trend_s, timings.write_s)
