"""A partition's messages that Faust did not deliver are read back from the real broker, in offset order, before
the message that revealed the hole; duplicates pass untouched (the worker's positions drop them). After an
assignment a partition continues at its committed offset (the log start where none is committed), so a first
message past it is a hole too; a message fetched in an earlier generation is dropped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from faust.types import TP
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streams.kafka_io import Publisher, create_topics
from streams.offset_holes import HoleFiller, ReadBackEvent, ReadBackMessage, read_ranges
from streams.settings import KafkaSettings, TopicNames

from .conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka]


def _event(topic: str, offset: int, value: bytes = b"delivered") -> ReadBackEvent:
    return ReadBackEvent(ReadBackMessage(topic, 0, offset, (topic, 0)), None, value)


def _published(kafka: KafkaEndpoint, prefix: str, messages: dict[int, list[bytes]]) -> tuple[KafkaSettings,
                                                                                               TopicNames]:
    """Topics named ``prefix-*``, ``messages`` sent to their interactions topic, partition by partition."""
    settings = KafkaSettings(kafka.bootstrap_servers)
    topics = TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq")
    create_topics(settings, topics, partitions=len(messages))
    with Publisher(settings) as publisher:
        for partition, values in messages.items():
            for value in values:
                publisher.send_to(topics.interactions, partition, value)
        publisher.flush()
    return settings, topics


def test_a_hole_is_filled_from_the_broker_and_a_duplicate_passes(kafka: KafkaEndpoint) -> None:
    settings, topics = _published(kafka, "holes", {0: [f"event {index}".encode() for index in range(20)]})
    filler = HoleFiller.for_settings(settings, "holes-app", [topics.interactions])
    delivered = [_event(topics.interactions, offset) for offset in (0, 1, 2, 7, 7, 8, 15)]
    filled = asyncio.run(filler.fill(delivered))
    offsets = [event.message.offset for event in filled]
    assert offsets == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    read_back = {event.message.offset: event.value for event in filled if event.value != b"delivered"}
    assert read_back == {offset: f"event {offset}".encode() for offset in (3, 4, 5, 6, 9, 10, 11, 12, 13, 14)}
    assert (filler.holes, filler.read_back, filler.unfilled) == (2, 10, 0)
    filler.forget()  # after a rebalance: the next offset seen is where the partition continues, not a hole
    assert [e.message.offset for e in asyncio.run(filler.fill([_event(topics.interactions, 19)]))] == [19]


def test_ranges_of_several_partitions_are_read_with_one_consumer(kafka: KafkaEndpoint) -> None:
    """What the catalogue reads before a close (streams/catalogue.py): every other partition of a topic from where
    it got to, up to the log's end; the partitions may be chosen from the topic's own. (``items`` itself is
    compacted and takes keyed messages only; these are keyless.)"""
    settings, topics = _published(kafka, "ranges", {p: [f"{p}:{index}".encode() for index in range(5)]
                                                    for p in range(3)})
    read = read_ranges(settings, topics.interactions, lambda partitions: {p: (3 if p == 2 else 0, None)
                                                                   for p in partitions if p != 1})
    assert {p: [value for _, _, value in records] for p, records in read.records.items()} == {
        0: [b"0:0", b"0:1", b"0:2", b"0:3", b"0:4"], 2: [b"2:3", b"2:4"]}
    assert read.reached == read.log_ends == {0: 5, 2: 5}
    bounded = read_ranges(settings, topics.interactions, {1: (1, 3)})
    assert [offset for offset, _, _ in bounded.records[1]] == [1, 2] and bounded.reached == {1: 3}


@dataclass(frozen=True)
class _Fetched:
    """A Faust message's parts the filler reads, with the consumer generation it was fetched in."""

    topic: str
    partition: int
    offset: int
    tp: TP
    generation_id: int


@dataclass(frozen=True)
class _Event:
    message: _Fetched
    value: bytes = b"delivered"


def test_an_assigned_partition_continues_at_its_committed_offset_and_stale_messages_drop(
        kafka: KafkaEndpoint) -> None:
    settings = KafkaSettings(kafka.bootstrap_servers)
    topics = TopicNames(interactions="start-interactions", items="start-items", trending="start-trending",
                        dlq="start-dlq")
    create_topics(settings, topics, partitions=2)
    with Publisher(settings) as publisher:
        for partition in (0, 1):
            for index in range(12):
                publisher.send_to(topics.interactions, partition, f"p{partition} event {index}".encode())
        publisher.flush()
    group = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id="start-app", enable_auto_commit=False)
    group.commit({TopicPartition(topics.interactions, 0): OffsetAndMetadata(5, "", -1)})  # partition 1: none
    group.close()
    generation = [3]
    filler = HoleFiller.for_settings(settings, "start-app", [topics.interactions], generation=lambda: generation[0])
    first, second = TP(topics.interactions, 0), TP(topics.interactions, 1)
    asyncio.run(filler.assigned({first, second, TP("another-topic", 0)}))
    assert filler.expected == {first: 5, second: 0}

    def fetched(tp: TP, offset: int, generation_id: int = 3) -> _Event:
        return _Event(_Fetched(tp.topic, tp.partition, offset, tp, generation_id))

    # a message prefetched further on comes first after the rebalance; one from the generation before is stale
    filled = asyncio.run(filler.fill([fetched(first, 9), fetched(second, 2, generation_id=2), fetched(second, 3)]))
    assert [(e.message.partition, e.message.offset) for e in filled] == [
        (0, 5), (0, 6), (0, 7), (0, 8), (0, 9), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert [e.value for e in filled if e.value != b"delivered"] == [
        *(f"p0 event {i}".encode() for i in (5, 6, 7, 8)), *(f"p1 event {i}".encode() for i in (0, 1, 2))]
    assert (filler.holes, filler.read_back, filler.stale) == (2, 7, 1)
    # a compacted topic (items) is checked at the assignment's start only: later gaps are compaction's, not holes
    start_only = HoleFiller.for_settings(settings, "start-app", [topics.interactions], generation=lambda: 3,
                                         start_only=True)
    asyncio.run(start_only.assigned({first}))
    filled = asyncio.run(start_only.fill([fetched(first, 9), fetched(first, 11)]))
    assert [e.message.offset for e in filled] == [5, 6, 7, 8, 9, 11] and start_only.holes == 1
