"""A partition's messages that Faust did not deliver are read back from the real broker, in offset order, before
the message that revealed the hole; duplicates pass untouched (the worker's positions drop them)."""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka_io import Publisher, create_topics
from streams.offset_holes import HoleFiller, ReadBackEvent, ReadBackMessage
from streams.settings import KafkaSettings, TopicNames

from .conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka]


def _event(topic: str, offset: int, value: bytes = b"delivered") -> ReadBackEvent:
    return ReadBackEvent(ReadBackMessage(topic, 0, offset, (topic, 0)), None, value)


def test_a_hole_is_filled_from_the_broker_and_a_duplicate_passes(kafka: KafkaEndpoint) -> None:
    settings = KafkaSettings(kafka.bootstrap_servers)
    topics = TopicNames(interactions="holes-interactions", items="holes-items", trending="holes-trending",
                        dlq="holes-dlq")
    create_topics(settings, topics, partitions=1)
    with Publisher(settings) as publisher:
        for index in range(20):
            publisher.send_to(topics.interactions, 0, f"event {index}".encode())
        publisher.flush()
    filler = HoleFiller.for_settings(settings)
    delivered = [_event(topics.interactions, offset) for offset in (0, 1, 2, 7, 7, 8, 15)]
    filled = asyncio.run(filler.fill(delivered))
    offsets = [event.message.offset for event in filled]
    assert offsets == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    read_back = {event.message.offset: event.value for event in filled if event.value != b"delivered"}
    assert read_back == {offset: f"event {offset}".encode() for offset in (3, 4, 5, 6, 9, 10, 11, 12, 13, 14)}
    assert (filler.holes, filler.read_back, filler.unfilled) == (2, 10, 0)
    filler.forget()  # after a rebalance: the next offset seen is where the partition continues, not a hole
    assert [e.message.offset for e in asyncio.run(filler.fill([_event(topics.interactions, 19)]))] == [19]
