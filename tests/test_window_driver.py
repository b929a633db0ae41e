"""The worker's partition engine without a broker: the drivers the ingest agent runs, over the worker's own
:class:`streams.partition_store.PartitionStore` (on a dict in place of the Faust table), forwarding each other
events and marks in random interleavings, revoked and reloaded from the table mid-stream — every item's closed
windows equal the offline replay's, which runs the same driver over memory."""

from __future__ import annotations

import json
import random
from collections import deque
from typing import Any, Iterator

import pytest

from streams.partition_store import PartitionStore, WorkerPartitions
from streams.routing import parse_rekeyed, forward_messages, mark_message, partition_owner
from trail.events import Interaction, InvalidEvent, ItemMeta
from trail.partition_clock import PartitionClock
from trail.replay import replay_windows
from trail.signals import TrendConfig
from trail.tracker import ItemWindow
from trail.window_driver import (AwaitCatalogue, DriverSettings, Effect, Forward, IngestCounters, PartitionDriver,
                                 Reject, SendMark, WindowClosed)
from trail.windows import WindowSpec

SPEC = WindowSpec(size_ms=1_000, origin_ms=0)
CONFIG = TrendConfig()


def _events(rng: random.Random, n: int = 2_000, items: int = 60) -> list[Interaction]:
    return sorted((Interaction(f"item-{rng.randrange(items)}", rng.randrange(10_000, 22_000), user_id=f"u{rng.randrange(50)}")
                   for _ in range(n)), key=lambda e: e.ts_ms)


class Cluster:
    """Partitions of one app, their re-key channels, and what they closed (a broker in miniature)."""

    def __init__(self, partitions: int, table: dict[str, Any], settings: DriverSettings) -> None:
        self.partitions, self.table, self.settings = partitions, table, settings
        self.counters = IngestCounters()
        self.workers = WorkerPartitions(table, settings, partition_owner(partitions), self.counters)
        self.channels: dict[int, deque[dict[str, Any]]] = {p: deque() for p in range(partitions)}  # re-key topic
        self.closed: dict[tuple[int, str], ItemWindow] = {}
        self.rejected: list[Reject] = []

    def carry_out(self, partition: int, effects: Iterator[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, (Forward, SendMark)):
                for owner, events in effect.events.items():
                    self.channels[owner].extend(json.loads(json.dumps(m)) for m in forward_messages(partition, events))
            if isinstance(effect, SendMark):
                for other in range(self.partitions):
                    if other != partition:
                        self.channels[other].append(mark_message(partition, effect.mark))
            if isinstance(effect, Reject):
                self.rejected.append(effect)
            elif isinstance(effect, WindowClosed):
                for window in effect.close.windows:
                    key = (window.window_index, window.item_id)
                    assert key not in self.closed, f"{key} closed twice"
                    self.closed[key] = window
            else:
                assert isinstance(effect, (Forward, SendMark, AwaitCatalogue))

    def own(self, partition: int, position: int, results: list[Interaction | InvalidEvent]) -> None:
        driver = self.workers.driver(partition)
        self.carry_out(partition, driver.begin())
        self.carry_out(partition, driver.own_message(position, results))
        self.carry_out(partition, driver.end())

    def rekeyed(self, partition: int) -> None:
        driver = self.workers.driver(partition)
        message = parse_rekeyed(self.channels[partition].popleft())
        steps = driver.mark(*message) if isinstance(message, tuple) else driver.forwarded(message.source,
                                                                                          message.events)
        self.carry_out(partition, driver.begin())
        self.carry_out(partition, steps)
        self.carry_out(partition, driver.end())


@pytest.mark.parametrize("seed", range(4))
def test_partition_drivers_over_the_table_equal_the_offline_replay(seed: int) -> None:
    rng = random.Random(seed)
    partitions = rng.choice((1, 2, 3))
    events = _events(rng)
    offline = {(s.item.window_index, s.item_id): s.item for w in replay_windows(events, SPEC, CONFIG, n_candidates=10)
               for s in w.signals}
    cluster = Cluster(partitions, {}, DriverSettings(SPEC, CONFIG, 10, partitions))
    inputs = {p: deque() for p in range(partitions)}
    for position, event in enumerate(events):  # a producer with another partitioner: any partition
        inputs[rng.randrange(partitions)].append((position, event))
    revoked = False
    while any(inputs.values()) or any(cluster.channels.values()):
        choices = [("in", p) for p, queue in inputs.items() if queue]
        choices += [("ch", p) for p, queue in cluster.channels.items() if queue]
        kind, partition = rng.choice(choices)
        if kind == "in":
            position, event = inputs[partition].popleft()
            cluster.own(partition, position, [event])
        else:
            cluster.rekeyed(partition)
        if not revoked and len(cluster.closed) > len(offline) // 2:
            cluster.workers.forget()  # a rebalance: every partition is read back from the table
            revoked = True
    assert revoked
    assert cluster.closed == offline
    assert cluster.counters.events == len(events) and not cluster.rejected


def test_bad_events_and_events_beyond_the_item_limit_are_rejected_once() -> None:
    table: dict[str, Any] = {}
    settings = DriverSettings(SPEC, CONFIG, 10, partitions=1, max_items=2)
    cluster = Cluster(1, table, settings)
    bad = InvalidEvent("schema", "no item_id")
    batch: list[Interaction | InvalidEvent] = [Interaction("a", 10_000), bad, Interaction("b", 10_100),
                                               Interaction("c", 10_200), Interaction("a", 11_500)]
    cluster.own(0, 0, batch)
    cluster.workers.forget()
    cluster.own(0, 0, batch)  # the same message redelivered after a restart: nothing is rejected or counted twice
    assert [(r.error.reason, r.batch_index) for r in cluster.rejected] == [("schema", 1), ("item_limit", 3)]
    assert cluster.counters.events == 3
    assert {key for key in cluster.closed} == {(10, "a"), (10, "b")}  # window 10 closed by the event at 11,500
    clock = PartitionClock.from_state(0, table["c/0"])
    assert (clock.closed, clock.items, clock.off) == (10, 2, 4)


def test_a_partition_store_loads_what_it_wrote_and_keeps_catalogue_entries_resident() -> None:
    table: dict[str, Any] = {}
    store = PartitionStore(table, 0, CONFIG)
    driver = PartitionDriver(0, store.load_clock(), store, DriverSettings(SPEC, CONFIG, 10))
    store.set_meta(ItemMeta("a", "Red mug", "kitchen"))
    effects = [*driver.own_message(0, [Interaction("a", 10_000), Interaction("b", 10_500)]),
               *driver.own_message(2, [Interaction("b", 11_200)])]
    effects += list(driver.end())
    closed = [e for e in effects if isinstance(e, WindowClosed)]
    assert [c.index for c in closed] == [10] and closed[0].stats.items_tracked == 2
    assert any(isinstance(e, AwaitCatalogue) for e in effects)  # "b" arrived without a catalogue entry
    store.set_meta(ItemMeta("b", "Blue cup", None))  # a resident record sees its entry at once
    assert store.records()["b"].title == "Blue cup"
    reloaded = PartitionStore(table, 0, CONFIG)
    records = reloaded.records()
    assert set(records) == {"a", "b"} and records["a"].title == "Red mug"
    assert records["a"].trend is not None and records["a"].last == store.records()["a"].last
    # window 10's count stays in b's stored open counts (its next event rewrites them); the stored trend is past
    # it, so the next close does not count it again
    again = PartitionDriver(0, reloaded.load_clock(), reloaded, DriverSettings(SPEC, CONFIG, 10))
    effects = list(again.own_message(3, [Interaction("a", 12_100)]))
    (window_11,) = [e for e in effects if isinstance(e, WindowClosed)]
    assert {w.item_id: w.count for w in window_11.close.windows} == {"a": 0.0, "b": 1.0}
