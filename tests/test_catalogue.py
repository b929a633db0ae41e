"""Before a close, the catalogue reads every ``items`` partition of the real broker for the entries of the closing
partition's items (``Catalogue.caught_up``): Faust now and then leaves a catalogue message out, and an entry on
another partition is forwarded only once that partition's owner reads it. Entries are read once per assignment,
and an entry already stored is not written again."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from serving.backend import ModelInfo
from streams.catalogue import Catalogue
from streams.kafka_io import Publisher, create_topics
from streams.metrics import Metrics
from streams.offset_holes import HoleFiller
from streams.partition_store import PartitionStore
from streams.routing import partition_owner
from streams.settings import KafkaSettings, TopicNames
from trail.trend_config import TrendConfig

from .conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka]

PARTITIONS = 3


class _Stores:
    """The worker's partitions, each store over a plain dict instead of the Faust table."""

    def __init__(self) -> None:
        self.table: dict = {}
        self.stores = {p: PartitionStore(self.table, p, TrendConfig()) for p in range(PARTITIONS)}

    def store(self, partition: int) -> PartitionStore:
        return self.stores[partition]


def _publish(settings: KafkaSettings, topic: str, entries: dict[str, str]) -> None:
    with Publisher(settings) as publisher:
        for item_id, category in entries.items():
            publisher.send(topic, item_id, json.dumps({"item_id": item_id, "title": f"T{item_id}",
                                                       "category": category}).encode())
        publisher.flush()


def test_a_closing_partition_reads_its_items_entries_from_every_items_partition(kafka: KafkaEndpoint) -> None:
    settings = KafkaSettings(kafka.bootstrap_servers)
    topics = TopicNames(interactions="cat-interactions", items="cat-items", trending="cat-trending", dlq="cat-dlq")
    create_topics(settings, topics, partitions=PARTITIONS)
    owner_of, stores = partition_owner(PARTITIONS), _Stores()
    first = {f"item{n}": f"C{n % 4}" for n in range(60)}
    _publish(settings, topics.items, first)
    holes = HoleFiller.for_settings(settings, "cat-app", [topics.items])
    worker_topics = SimpleNamespace(items=SimpleNamespace(topics=[topics.items]))  # only the topic's name is read
    metrics = Metrics()
    catalogue = Catalogue(None, worker_topics, stores, owner_of, metrics, None, holes)  # type: ignore[arg-type]

    asyncio.run(catalogue._read_items_straight(1))
    owned = {item for item in first if owner_of(item) == 1}
    assert 0 < len(owned) < len(first)
    assert {item: stores.store(1).meta(item).get("cat") for item in first if stores.store(1).meta(item)} == {
        item: first[item] for item in owned}
    assert catalogue.read_straight == len(owned)
    exposition = metrics.prometheus(ModelInfo("trail", "1", "onnx")).splitlines()
    assert f"trail_catalogue_entries_read_from_broker_total {len(owned)}" in exposition
    assert not any(stores.store(p).meta(item) for p in (0, 2) for item in first)  # only the closing partition's

    later = {**{item: first[item] for item in list(first)[:5]}, "item0": "NEW", "item100": "C9"}
    _publish(settings, topics.items, later)
    asyncio.run(catalogue._read_items_straight(1))  # from where the first read stopped
    expected = {**{item: first[item] for item in owned}, **{i: c for i, c in later.items() if owner_of(i) == 1}}
    assert {item: stores.store(1).meta(item).get("cat") for item in (*first, "item100")
            if stores.store(1).meta(item)} == expected
    changed = sum(1 for item, category in later.items() if owner_of(item) == 1 and first.get(item) != category)
    assert changed == 1  # item0's new category (item100 belongs to partition 0)
    assert catalogue.read_straight == len(owned) + changed  # an entry stored already is not written again
    catalogue.forget()  # a rebalance: the next read starts over, and finds nothing new to write
    asyncio.run(catalogue._read_items_straight(1))
    assert catalogue.read_straight == len(owned) + changed
