"""Which partition owns an item, and the messages partitions send each other over the internal re-key topics.

An item's state lives on one partition: the one Kafka's default partitioner (murmur2 of the key, as the Java
client and kafka-python compute it) gives its ``item_id``. Events that a producer put elsewhere (librdkafka's
CRC32, random or round-robin partitioners, no key) are forwarded by the partition that received them to the
owner, over ``<app>-rekeyed`` (co-partitioned with ``interactions``); catalogue entries likewise over
``<app>-items-rekeyed``. A producer that already uses murmur2 pays no extra hop: only the small marks that tell
each partition how far the others have got (:mod:`streams.partition_clock`) travel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from kafka.partitioner.default import murmur2

from trail.events import Interaction
from trail.partition_clock import Mark

__all__ = ["FORWARD_CHUNK", "Forwarded", "forward_messages", "mark_message", "murmur2_partition", "parse_rekeyed",
           "partition_owner"]

FORWARD_CHUNK = 500  # forwarded events per re-key message (bounded well under a broker's 1 MB message limit)


def murmur2_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, kafka-python) gives ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def partition_owner(partitions: int) -> Callable[[str], int]:
    """The partition that owns an ``item_id`` (cached: it is asked for every event)."""
    return functools.lru_cache(maxsize=262_144)(lambda item_id: murmur2_partition(item_id, partitions))


@dataclass(frozen=True)
class Forwarded:
    """Events another partition (``source``) received for items this partition owns, with their positions there."""

    source: int
    events: tuple[tuple[int, Interaction], ...]


def forward_messages(source: int, events: Iterable[tuple[int, Interaction]]) -> list[dict[str, Any]]:
    """Re-key messages carrying ``events`` (position, event) in order, at most :data:`FORWARD_CHUNK` each."""
    rows = [[position, e.item_id, e.ts_ms, e.event_type, e.user_id, e.weight, e.event_id] for position, e in events]
    return [{"kind": "events", "source": source, "events": rows[i:i + FORWARD_CHUNK]}
            for i in range(0, len(rows), FORWARD_CHUNK)]


def mark_message(source: int, mark: Mark) -> dict[str, Any]:
    return {"kind": "mark", "source": source, "first": mark.first, "closable": mark.closable}


def parse_rekeyed(value: Mapping[str, Any]) -> Forwarded | tuple[int, Mark]:
    """A re-key message (written by another worker of this app, so trusted to be well formed)."""
    source = int(value["source"])
    if value["kind"] == "mark":
        return source, Mark(value["first"], int(value["closable"]))
    return Forwarded(source, tuple(
        (int(position), Interaction(item_id, int(ts_ms), event_type, user_id, float(weight), event_id))
        for position, item_id, ts_ms, event_type, user_id, weight, event_id in value["events"]))
