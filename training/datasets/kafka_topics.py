"""The ``kafka`` dataset adapter: the live ``interactions`` and ``items`` topics as a training source.

It reads what the worker reads, with the worker's settings (``KAFKA_*`` for the cluster and TLS/SASL,
``TRAIL_TOPIC_*`` for the names), and validates every message with the worker's own parser
(:func:`trail.events.parse_interactions`): an event the worker would dead-letter is skipped here and counted by
its reason (:attr:`KafkaTopics.skipped`). Nothing is committed and no consumer group is joined (partitions are
assigned by hand), so reading never moves the worker's offsets.

Reading is bounded in two ways:

- in time: only events whose *event* time lies in ``[since_ms, until_ms)``. Each partition is first positioned
  with offsets-for-times at ``since_ms`` minus :data:`SEEK_SLACK_MS` (a record is never stamped before its event
  happened, give or take producer clock skew, so nothing skipped that way is in range); reading stops at the end
  offsets seen when the read began, so a busy topic still ends;
- in memory: the partitions are merged in event time from small per-partition buffers (one reader per
  partition, read only when its buffer is empty), so events stream from the broker and are never all held at once.

The merge yields events in event-time order when each partition is (as ``trail replay`` and any producer keying by
``item_id`` writes them); an event that arrives out of order on its partition reaches the replay after later ones,
which counts it late exactly as the file adapters' replay would.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streams.kafka_io import KafkaUnavailable, connect_client
from streams.settings import KafkaSettings, TopicNames
from trail.events import Interaction, InvalidEvent, ItemMeta, parse_interactions, parse_item_meta
from trail.windows import WindowSpec

from .base import DatasetError

__all__ = ["KafkaReadError", "KafkaTopics", "SEEK_SLACK_MS"]

SEEK_SLACK_MS = 5 * 60_000  # producer clock skew tolerated between an event's time and its record's timestamp
POLL_RECORDS = 2_000


class KafkaReadError(DatasetError):
    """The broker stopped answering before the read reached the end offsets it began with."""


@dataclass
class KafkaTopics:
    """``items()`` and ``interactions()`` of a cluster's TRAIL topics, like any other :class:`Dataset`."""

    settings: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicNames = field(default_factory=TopicNames)
    since_ms: int | None = None
    until_ms: int | None = None
    read_timeout_s: float = 30.0  # no record for this long while offsets remain: the broker is gone
    name: str = "kafka"
    skipped: Counter = field(default_factory=Counter)  # reason → events skipped by the last interactions() pass
    skipped_items: Counter = field(default_factory=Counter)
    read_messages: int = 0
    first_event_ms: int | None = None  # event-time span of what the last interactions() pass yielded
    last_event_ms: int | None = None

    def __post_init__(self) -> None:
        if self.since_ms is not None and self.until_ms is not None and self.until_ms <= self.since_ms:
            raise DatasetError(f"the time range is empty: until {self.until_ms} <= since {self.since_ms}")

    @classmethod
    def last_windows(cls, n_windows: int, spec: WindowSpec, until_ms: int | None = None,
                     **kwargs: Any) -> "KafkaTopics":
        """The ``n_windows`` windows up to and including the one holding the newest event on the topic (or, with
        ``until_ms``, the window holding the last instant before it)."""
        if n_windows < 1:
            raise DatasetError("--last-windows must be >= 1")
        if until_ms is None:
            probe = cls(**kwargs)
            newest = probe.newest_event_ms()
            if newest is None:
                raise DatasetError(f"topic {probe.topics.interactions!r} holds no valid interaction")
            latest = spec.index_of(newest)
            until_ms = spec.end_of(latest)
        else:
            latest = spec.index_of(until_ms - 1)
        return cls(**kwargs, since_ms=spec.start_of(latest - n_windows + 1), until_ms=until_ms)

    # -- the Dataset protocol --------------------------------------------------------------------------------
    def items(self) -> Iterator[ItemMeta]:
        """The catalogue: every valid record of the compacted ``items`` topic, the newest per item last."""
        self.skipped_items = Counter()
        for value in self._values(self.topics.items):
            try:
                yield parse_item_meta(value)
            except InvalidEvent as exc:
                self.skipped_items[exc.reason] += 1

    def interactions(self) -> Iterator[Interaction]:
        """Valid interactions in ``[since_ms, until_ms)``, merged across partitions in event time."""
        self.skipped, self.read_messages = Counter(), 0
        self.first_event_ms = self.last_event_ms = None
        consumer = self._consumer()
        readers: dict[TopicPartition, KafkaConsumer] = {}
        try:
            partitions = self._assign(consumer, self.topics.interactions)
            ends = consumer.end_offsets(partitions)
            self._seek(consumer, partitions)
            starts = {tp: consumer.position(tp) for tp in partitions}
            for tp in partitions:  # one reader per partition: each buffer fills only from its own partition
                if starts[tp] < ends[tp]:
                    readers[tp] = reader = self._consumer()
                    reader.assign([tp])
                    reader.seek(tp, starts[tp])
            for event in self._merged(readers, ends):
                if self.first_event_ms is None:
                    self.first_event_ms = event.ts_ms
                self.last_event_ms = event.ts_ms if self.last_event_ms is None else max(self.last_event_ms, event.ts_ms)
                yield event
        finally:
            consumer.close()
            for reader in readers.values():
                reader.close()

    # -- helpers ---------------------------------------------------------------------------------------------
    def newest_event_ms(self, tail_messages: int = 100) -> int | None:
        """The latest event time among the last ``tail_messages`` messages of each partition (where producers
        write in order; a few, so a trailing invalid message or a transaction marker still leaves an answer)."""
        consumer = self._consumer()
        try:
            partitions = self._assign(consumer, self.topics.interactions)
            ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
            newest: int | None = None
            for tp in partitions:
                if ends[tp] <= starts[tp]:
                    continue
                consumer.seek(tp, max(starts[tp], ends[tp] - tail_messages))
            pending = {tp for tp in partitions if ends[tp] > starts[tp]}
            deadline = time.monotonic() + self.read_timeout_s
            while pending:
                if time.monotonic() > deadline:
                    raise KafkaReadError(f"no answer from {self.settings.bootstrap_servers} within "
                                         f"{self.read_timeout_s:.0f} s while reading the newest events")
                for tp, messages in consumer.poll(timeout_ms=500).items():
                    for message in messages:
                        for event in self._parse(message.value, count=False):
                            newest = event.ts_ms if newest is None else max(newest, event.ts_ms)
                for tp in list(pending):  # a partition ending in a transaction marker returns nothing but moves
                    if consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            return newest
        finally:
            consumer.close()

    def _consumer(self) -> KafkaConsumer:
        return connect_client(KafkaConsumer, self.settings, group_id=None, enable_auto_commit=False,
                              auto_offset_reset="earliest", max_poll_records=POLL_RECORDS)

    def _assign(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            raise DatasetError(f"topic {topic!r} does not exist on {self.settings.bootstrap_servers}")
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        return partitions

    def _seek(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        if self.since_ms is None:
            consumer.seek_to_beginning(*partitions)
            return
        target = max(0, self.since_ms - SEEK_SLACK_MS)
        found = consumer.offsets_for_times({tp: target for tp in partitions})
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            offset = found.get(tp)
            consumer.seek(tp, offset.offset if offset is not None else ends[tp])

    def _parse(self, value: bytes | None, count: bool = True) -> list[Interaction]:
        if value is None:  # a tombstone (null value): no event, as the worker dead-letters it
            if count:
                self.skipped["not_json"] += 1
            return []
        try:
            results = parse_interactions(value)
        except InvalidEvent as exc:
            results = [exc]
        valid = []
        for result in results:
            if isinstance(result, InvalidEvent):
                if count:
                    self.skipped[result.reason] += 1
            elif (self.since_ms is None or result.ts_ms >= self.since_ms) and (
                    self.until_ms is None or result.ts_ms < self.until_ms):
                valid.append(result)
        return valid

    def _merged(self, readers: dict[TopicPartition, KafkaConsumer],
                 ends: dict[TopicPartition, int]) -> Iterator[Interaction]:
        """k-way merge by event time over per-partition buffers: a partition is read (at most ``POLL_RECORDS``
        messages at a time) only when its buffer is empty, so memory stays bounded by the partitions' count."""
        buffers: dict[TopicPartition, deque[Interaction]] = {tp: deque() for tp in readers}
        live = set(readers)
        while True:
            for tp in [tp for tp in live if not buffers[tp]]:
                self._fill(readers[tp], tp, ends[tp], buffers[tp])
                if readers[tp].position(tp) >= ends[tp]:
                    live.discard(tp)
            if any(not buffers[tp] for tp in live):
                continue  # a live partition's next event is still unknown (its messages held none in range)
            heads = [(buffer[0].ts_ms, tp.partition, tp) for tp, buffer in buffers.items() if buffer]
            if not heads:
                return
            yield buffers[min(heads)[2]].popleft()

    def _fill(self, reader: KafkaConsumer, tp: TopicPartition, end: int, buffer: deque[Interaction]) -> None:
        """Poll ``tp`` until it gives messages or reaches ``end``; :class:`KafkaReadError` when the broker is gone."""
        deadline = time.monotonic() + self.read_timeout_s
        while reader.position(tp) < end:
            try:
                messages = reader.poll(timeout_ms=500).get(tp, [])
            except KafkaError as exc:  # a client that gives up on the broker before our deadline does
                raise KafkaReadError(f"the broker at {self.settings.bootstrap_servers} stopped answering mid-read "
                                     f"(partition {tp.partition}): {exc}") from None
            for message in messages:
                if message.offset >= end:
                    break
                self.read_messages += 1
                buffer.extend(self._parse(message.value))
            if messages:
                return
            if time.monotonic() > deadline:
                raise KafkaReadError(f"the broker at {self.settings.bootstrap_servers} stopped answering mid-read "
                                     f"(partition {tp.partition} at offset {reader.position(tp)} of {end}, no answer "
                                     f"in {self.read_timeout_s:g} s): nothing was trained or published")

    def _values(self, topic: str) -> Iterator[bytes]:
        """Every message value of ``topic`` up to its end offsets at the start, partition after partition."""
        consumer = self._consumer()
        try:
            partitions = self._assign(consumer, topic)
            ends = consumer.end_offsets(partitions)
            consumer.seek_to_beginning(*partitions)
            live = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
            last_record = time.monotonic()
            while live:
                records = consumer.poll(timeout_ms=500)
                if records:
                    last_record = time.monotonic()
                elif time.monotonic() - last_record > self.read_timeout_s:
                    raise KafkaReadError(f"the broker at {self.settings.bootstrap_servers} stopped answering "
                                         f"while reading {topic!r}")
                for tp, messages in records.items():
                    for message in messages:
                        if message.offset < ends[tp] and message.value is not None:  # None: a tombstone
                            yield message.value
                for tp in list(live):
                    if consumer.position(tp) >= ends[tp]:
                        live.discard(tp)
        except KafkaUnavailable as exc:
            raise KafkaReadError(str(exc)) from None
        finally:
            consumer.close()
