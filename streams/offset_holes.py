"""Holes in a partition's offsets, read back from the broker before the worker goes on.

faust-streaming 0.15.3 now and then hands the ingest agent a partition's messages with some left out: seen
after a worker recovered from a long changelog (``tests/test_stream_worker.py``, the legacy-state test lost one
to 73 consecutive offsets of one partition in 6 of 8 runs; the agent never received them, yet Faust acknowledged
past them, so no restart would deliver them again). The same runs also delivered a message twice; duplicates the
worker's positions already drop (``PartitionClock.off``). A hole is the other half: when a partition's next
message is not the one after the last, the messages in between are read straight from the broker (an assigned
consumer without a group: it commits nothing) and processed first, in order. An offset the broker has no record
for (a transaction marker, a compacted or expired record) reads as nothing and costs one fetch.

A hole can also open at the very start of an assignment: after a rebalance Faust may first deliver a message
it prefetched further on (faust-streaming issues 216 and 221). A partition that moved to another worker then
started past its committed offset, and the events it skipped were lost or, where a later event had already moved
the partition's clock, counted as late (the cause of a window published without one partition's events, in a
run of ``test_three_partitions_over_two_workers_in_batches_equal_one_over_one``). So at every assignment the
group's committed offset of each partition (the log start where none is committed) is read once, before any
message of the new assignment is processed, and is where the partition is expected to continue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Hashable, Mapping, Sequence

from .settings import KafkaSettings

__all__ = ["HoleFiller", "ReadBackEvent", "ReadBackMessage", "read_ranges"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0  # a hole the broker does not return within this is reported and left (the worker goes on)


@dataclass(frozen=True)
class ReadBackMessage:
    """The parts of a Faust ``Message`` the ingest agent reads."""

    topic: str
    partition: int
    offset: int
    tp: Hashable


@dataclass(frozen=True)
class ReadBackEvent:
    """A message read back from the broker, shaped like the Faust event it should have been."""

    message: ReadBackMessage
    key: bytes | None
    value: bytes


@dataclass
class HoleFiller:
    """Per topic partition, the offset expected next; a message beyond it has the ones in between read back."""

    settings: KafkaSettings
    group_id: str  # the consumer group whose committed offsets say where an assigned partition continues
    topics: frozenset[str]  # the topics whose partitions are watched (the ingest agent's stream)
    generation: Callable[[], int | None] = lambda: None  # the consumer group generation this worker is in now
    # only an assignment's first message is checked: in a compacted topic (``items``) later gaps are normal, and
    # reading each one back would cost a fetch per compacted run
    start_only: bool = False
    expected: dict[Hashable, int] = field(default_factory=dict)
    holes: int = 0  # holes found
    read_back: int = 0  # messages read back into them
    unfilled: int = 0  # offsets of holes the broker did not return in time
    stale: int = 0  # messages dropped because they were fetched in an earlier generation (before a rebalance)
    _starts_read: asyncio.Event | None = field(default=None, repr=False)  # set once an assignment's starts are known

    @classmethod
    def for_settings(cls, settings: KafkaSettings, group_id: str, topics: Collection[str],
                     generation: Callable[[], int | None] = lambda: None, start_only: bool = False) -> "HoleFiller":
        return cls(settings, group_id, frozenset(topics), generation, start_only=start_only)

    def forget(self) -> None:
        """Partitions revoked: where they continue is known again only at the next assignment."""
        self.expected.clear()
        self._starts_read = None

    async def assigned(self, partitions: Collection[Any]) -> None:
        """A new assignment (Faust ``TP`` tuples): each watched partition is expected to continue at the group's
        committed offset, or at the log start where none is committed (the worker reads from the earliest)."""
        watched = [tp for tp in partitions if tp.topic in self.topics]
        if not watched:
            return
        read = self._starts_read = asyncio.Event()  # fill() waits for it: set before the first await below
        try:
            starts = await asyncio.get_running_loop().run_in_executor(None, self._starts, watched)
        except Exception as exc:  # noqa: BLE001 - the broker is going away: holes are found from the 2nd message on
            log.warning("could not read the committed offsets of %d assigned partitions (%s); a hole before the "
                        "first message of this assignment goes unnoticed", len(watched), exc)
            return
        finally:
            read.set()
        for tp, start in starts.items():
            self.expected.setdefault(tp, start)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}] from offset {starts[tp]}"
                                          for tp in sorted(watched)))

    async def fill(self, events: Sequence[Any]) -> list[Any]:
        """``events`` with every hole in a partition's offsets filled, in place, by the messages read back."""
        if self._starts_read is not None:
            await self._starts_read.wait()
        filled: list[Any] = []
        generation, stale_before = self.generation(), self.stale
        for event in events:
            message = event.message
            fetched_in = getattr(message, "generation_id", None)
            if generation is not None and fetched_in is not None and fetched_in != generation:
                # Fetched before a rebalance (Faust's own streams drop these, but a batch taken before the
                # rebalance still holds them). The partition's owner now reads it again from the committed
                # offset; processed here, its state write could race that owner's on the shared changelog.
                self.stale += 1
                continue
            expected = self.expected.get(message.tp)
            if expected is not None and message.offset > expected:
                self.holes += 1
                missing = await asyncio.get_running_loop().run_in_executor(
                    None, self._read, message.topic, message.partition, expected, message.offset)
                log.warning("%s[%d]: offsets %d..%d were not delivered; read %d back from the broker",
                            message.topic, message.partition, expected, message.offset - 1, len(missing))
                filled.extend(ReadBackEvent(ReadBackMessage(message.topic, message.partition, offset, message.tp),
                                            key, value) for offset, key, value in missing)
                self.read_back += len(missing)
            if self.start_only:
                self.expected.pop(message.tp, None)
            elif expected is None or message.offset >= expected:  # a duplicate does not move the expectation back
                self.expected[message.tp] = message.offset + 1
            filled.append(event)
        if self.stale > stale_before:
            log.warning("%d messages fetched before the last rebalance dropped: their partitions are read again "
                        "from the committed offsets", self.stale - stale_before)
        return filled

    def _starts(self, partitions: Sequence[Any]) -> dict[Hashable, int]:
        """Committed offset of each partition for the group, else its log start (blocking: runs in a thread)."""
        from kafka import KafkaConsumer, TopicPartition

        from .kafka_io import connect_client

        consumer = connect_client(KafkaConsumer, self.settings, group_id=self.group_id, enable_auto_commit=False)
        try:
            kafka_tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in partitions}
            beginnings = consumer.beginning_offsets(list(kafka_tps.values()))
            starts: dict[Hashable, int] = {}
            for tp, kafka_tp in kafka_tps.items():
                committed = consumer.committed(kafka_tp)
                starts[tp] = committed if committed is not None else beginnings[kafka_tp]
            return starts
        finally:
            consumer.close()

    def _read(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, bytes | None, bytes]]:
        """The records at offsets ``start`` to ``end - 1`` (blocking: runs in a thread)."""
        read = read_ranges(self.settings, topic, {partition: (start, end)})
        records, reached = read.records[partition], read.reached[partition]
        if reached < end:
            self.unfilled += end - reached
            log.error("%s[%d]: offsets %d..%d not read back within %.0f s; going on without them", topic, partition,
                      reached, end - 1, READ_TIMEOUT_S)
        return records


@dataclass(frozen=True)
class ReadRanges:
    """What :func:`read_ranges` read: per partition its records, the offset reached, and the log's end."""

    records: dict[int, list[tuple[int, bytes | None, bytes]]]
    reached: dict[int, int]  # the next offset not read (the range's end unless the broker was too slow)
    log_ends: dict[int, int]  # each partition's end offset when the read began


Ranges = Mapping[int, tuple[int, "int | None"]]  # partition → (start, end); end None: the log's end


def read_ranges(settings: KafkaSettings, topic: str, ranges: Ranges | Callable[[Collection[int]], Ranges],
                timeout_s: float = READ_TIMEOUT_S) -> ReadRanges:
    """The records of ``topic`` at offsets ``start`` to ``end - 1`` of each partition in ``ranges`` (``end`` None:
    the log's end now), straight from the broker with one consumer outside any group (blocking: run it in a thread).
    ``ranges`` may be a function of the topic's partitions. A start before the log start reads from the log start."""
    from kafka import KafkaConsumer, TopicPartition

    from .kafka_io import connect_client

    consumer = connect_client(KafkaConsumer, settings, group_id=None, enable_auto_commit=False)
    try:
        if callable(ranges):
            ranges = ranges(sorted(consumer.partitions_for_topic(topic) or ()))
        tps = {partition: TopicPartition(topic, partition) for partition in ranges}
        records: dict[int, list[tuple[int, bytes | None, bytes]]] = {partition: [] for partition in ranges}
        if not tps:
            return ReadRanges({}, {}, {})
        consumer.assign(list(tps.values()))
        starts, log_ends = consumer.beginning_offsets(list(tps.values())), consumer.end_offsets(list(tps.values()))
        bounds = {partition: (max(start, starts[tps[partition]]), log_ends[tps[partition]] if end is None else end)
                  for partition, (start, end) in ranges.items()}
        for partition, (start, _) in bounds.items():
            consumer.seek(tps[partition], start)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tps[p]) < end for p, (_, end) in bounds.items()) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                start, end = bounds[tp.partition]
                records[tp.partition].extend((r.offset, r.key, r.value) for r in batch if start <= r.offset < end)
        reached = {p: min(consumer.position(tps[p]), end) for p, (_, end) in bounds.items()}
    finally:
        consumer.close()
    return ReadRanges(records, reached, {p: log_ends[tp] for p, tp in tps.items()})
