"""Publishing a dataset as live traffic: the catalogue first, then interactions in event-time order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator

from trail.errors import ConfigError
from trail.events import Interaction, ItemMeta

from .kafka_io import Publisher
from .settings import TopicNames

__all__ = ["Pacer", "ReplayResult", "replay"]


@dataclass(frozen=True)
class Pacer:
    """When to send each event. ``rate``: at most that many events per second. ``speed``: event time runs that
    many times faster than the wall clock (``speed=3600`` plays an hour per second). Neither: as fast as the
    broker takes them. Both: whichever is slower for each event."""

    rate: float | None = None
    speed: float | None = None

    def __post_init__(self) -> None:
        for name in ("rate", "speed"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"--{name} must be a positive number, got {value}")

    def delays(self, events: Iterable[Interaction], sleep: Callable[[float], object] = time.sleep) -> Iterator[Interaction]:
        if self.rate is None and self.speed is None:
            yield from events
            return
        start = time.monotonic()
        first_ts: int | None = None
        for index, event in enumerate(events):
            first_ts = event.ts_ms if first_ts is None else first_ts
            due = 0.0
            if self.rate is not None:
                due = index / self.rate
            if self.speed is not None:
                due = max(due, (event.ts_ms - first_ts) / 1000.0 / self.speed)
            wait = start + due - time.monotonic()
            if wait > 0:
                sleep(wait)
            yield event


@dataclass(frozen=True)
class ReplayResult:
    items: int
    interactions: int
    first_ts_ms: int | None
    last_ts_ms: int | None
    seconds: float


def replay(
    items: Iterable[ItemMeta],
    interactions: Iterable[Interaction],
    publisher: Publisher,
    topics: TopicNames,
    *,
    limit: int | None = None,
    pacer: Pacer = Pacer(),
    progress: Callable[[int], None] = lambda n: None,
    batch: int = 1,
    skip: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
) -> ReplayResult:
    """Publish every item (key = item_id) to the items topic, then up to ``limit`` interactions (key = item_id,
    so one item's events stay in order on one partition). With ``batch > 1`` interactions travel as JSON arrays
    of up to ``batch`` events, grouped by the partition their item_id belongs to. ``skip``: leave out the first
    that many interactions (a resumed replay; the limit counts them). ``should_stop``: checked before each event;
    when it turns true, what was sent is flushed and the replay ends early. Returns what was sent."""
    started = time.monotonic()
    item_count = 0
    for item in items:
        publisher.send(topics.items, item.item_id, item.to_json())
        item_count += 1
    publisher.flush()
    count = 0
    messages = 0
    first = last = None
    pending: dict[int, list[bytes]] = {}

    def send_batch(partition: int) -> None:
        nonlocal messages
        publisher.send_to(topics.interactions, partition, b"[" + b",".join(pending.pop(partition)) + b"]")
        messages += 1

    for event in pacer.delays(islice(interactions, skip, limit), sleep):
        if should_stop():
            break
        if batch > 1:
            partition = publisher.partition_of(topics.interactions, event.item_id)
            pending.setdefault(partition, []).append(event.to_json())
            if len(pending[partition]) >= batch:
                send_batch(partition)
        else:
            publisher.send(topics.interactions, event.item_id, event.to_json())
            messages += 1
        first = event.ts_ms if first is None else first
        last = event.ts_ms
        count += 1
        if count % 1000 == 0:
            progress(1000)
    for partition in list(pending):
        send_batch(partition)
    progress(count % 1000)
    publisher.flush()
    if publisher.acknowledged != item_count + messages:
        raise RuntimeError(f"the broker acknowledged {publisher.acknowledged} of {item_count + messages} records")
    return ReplayResult(item_count, count, first, last, time.monotonic() - started)
