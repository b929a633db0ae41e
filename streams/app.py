"""The Faust application: ``faust -A streams.app worker`` (or ``trail worker``).

Agents
- ``catalogue``: the compacted ``items`` topic → item titles and categories in the state table (an entry on a
  partition that does not own its item is forwarded to the owner over ``<app>-items-rekeyed``).
- ``ingest``: the ``interactions`` topic, with the co-partitioned ``<app>-rekeyed`` and ``<app>-ticks`` →
  validate (bad events to the DLQ with reason and source coordinates) → count in the item's event-time window on
  the partition owning the item (others forward it there: :mod:`streams.routing`) → when every partition's mark
  has passed a window's end (:mod:`streams.partition_clock`), close it for every item of the partition
  (:func:`trail.tracker.close_partition_window`) and send a report to the internal summaries topic.
- ``merge``: the summaries topic (one partition, so one worker merges) → when every partition has reported a
  window: global ranks, candidates, scores, explanations, checks → one record on ``trending-with-explanations``.
  Its state (:class:`streams.merge.MergerStore`) is one table key per pending report.

State lives in two RocksDB tables with changelogs. ``state`` (key layout: :mod:`streams.state_keys`) holds, per
partition and item, the open-window counts with the last source offset applied to them (``o/<partition>/<item>``,
the only key an event touches), the River trend state (in 1,024 buckets per partition, ``b/<partition>/<bucket>``,
each bucket rewritten whole when a window closes with events of one of its items) and the catalogue entry
(``m/...``), plus the partition clock (``c/<partition>``: watermark, last closed window, counters, last source
offset seen, every partition's latest mark). All of a partition's keys are written to the same changelog
partition, in order, so any recovered state is a prefix of the writes; with the per-record applied offsets that
makes recovery exact. A message to another topic that a later state write depends on (a report, a mark,
forwarded events, a DLQ entry) is acknowledged by the broker before that write is made. Every internal topic and
both changelogs are created (and have leaders) before Faust subscribes (:func:`_ensure_topics`).

Each worker keeps its partitions' item records in memory (``resident``: read from the table once per assignment,
then kept current by the ingest and catalogue agents), so a window close does not scan the table. A close writes
only the buckets holding an item that had events in the closed window (or was evicted). An idle item's state is a
deterministic function of its stored state and the windows since (zeros), so
after a restart :func:`trail.tracker.close_item` catches it up; counts a close consumed stay in ``o/`` until the
item's next event rewrites it and are dropped on load, because the stored trend is already past their window.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import gc
import json
import logging
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import faust
from faust.streams import _current_event
from faust.types import TP, TableT

from serving.backend import Backend, FallbackChain
from serving.baseline import BaselineBackend
from serving.onnx_backend import OnnxBackend
from serving.triton_backend import TritonBackend, parse_triton_url
from trail.errors import ConfigError, TrailError
from trail.events import POSITIONS_PER_MESSAGE, Interaction, InvalidEvent, parse_interactions, parse_item_meta
from trail.trending_record import TrendingRecord
from trail.tracker import ItemRecord, OpenWindows, WindowStats, apply_event, close_partition_window

from . import commit_barrier
from .config import BACKEND_CHOICES, WorkerConfig
from .delivery import DeliveryWatch
from .logs import logging_config
from .merge import MergerStore, PartitionReport, WindowMerger
from .metrics import Metrics
from .partition_clock import PartitionClock
from .progress import Progress
from .routing import Forwarded, forward_messages, mark_message, parse_rekeyed, partition_owner
from .state_keys import (clock_key, legacy_trend_key, meta_key, open_key, parse_key, trend_bucket,
                         trend_bucket_key)

__all__ = ["app", "build_app", "config"]

log = logging.getLogger("trail.worker")


# Forwarded events wait in the re-key topic until their owner counts them: keep them as long as a worker may be down.
REKEY_RETENTION_MS = 7 * 86_400_000


def load_backends(config: WorkerConfig) -> tuple[Backend, Backend]:
    """The configured scorer and what replaces it when it is unavailable.

    ``baseline`` / ``baseline:holt``: a baseline forecaster (its own fallback). ``onnx``: the newest exported TRAIL
    version, embedded; falls back to the EMA baseline. ``triton://HOST:PORT``: TRAIL on a Triton server over gRPC;
    falls back to the embedded model when the repository has a version, else to the baseline."""
    url = config.backend_url
    kind, _, option = url.partition(":")
    baseline = BaselineBackend()
    repository = Path(config.model_repository)
    if kind == "baseline":
        return BaselineBackend(method=option or "ema"), baseline  # type: ignore[arg-type]
    if url == "onnx":
        return OnnxBackend(repository, config.model_name), baseline
    if kind == "triton":
        triton = TritonBackend(parse_triton_url(url), config.model_name)
        return triton, FallbackChain((OnnxBackend(repository, config.model_name), baseline))
    raise ConfigError(f"TRAIL_BACKEND={url!r} is not a known backend ({BACKEND_CHOICES})")


def _partition_count(config: WorkerConfig) -> int:
    if config.partitions:
        return config.partitions
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**config.kafka.client_config())
    try:
        partitions = consumer.partitions_for_topic(config.topics.interactions)
    finally:
        consumer.close()
    if not partitions:
        raise TrailError(f"topic {config.topics.interactions!r} does not exist: run `trail topics create` first")
    return len(partitions)


@dataclass(frozen=True)
class InternalTopic:
    """A topic the worker owns: its partition count and Kafka topic configs (retention, compaction)."""

    partitions: int
    configs: dict[str, str]

    @classmethod
    def expiring(cls, partitions: int, retention_ms: int) -> InternalTopic:
        return cls(partitions, {"retention.ms": str(retention_ms)})

    @classmethod
    def changelog(cls, table: TableT) -> InternalTopic:
        """A table's changelog as Faust itself would declare it (compacted, the table's partitions)."""
        return cls(table.partitions or 1, {"cleanup.policy": "compact"})


def _ensure_topics(config: WorkerConfig, topics: dict[str, InternalTopic], wait_s: float = 60.0) -> None:
    """Create the worker's internal topics and the tables' changelogs and wait until every partition has a
    leader, before Faust subscribes. A topic Faust would create itself on first use may not be in the metadata
    yet when the consumer group assigns partitions. Faust then logs "Ignoring missing topic" and the agent that
    reads it gets no partition (on a fresh broker the merger never saw a summary and no list was published), or,
    for a changelog, the group's metadata snapshot records it with 0 partitions until the next metadata refresh
    (minutes) and every table write raises ``PartitionsMismatch`` ("the changelog topic has 0 partitions")."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**config.kafka.client_config(), client_id="trail-worker")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, topic.partitions, config.replication_factor, topic_configs=topic.configs)
               for name, topic in topics.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:  # another worker of the app created them meanwhile
                pass
        deadline = time.monotonic() + wait_s
        while True:
            described = {t["topic"] if "topic" in t else t.get("name"): t for t in admin.describe_topics(list(topics))}
            missing = [name for name, topic in topics.items()
                       if not _has_leaders(described.get(name), topic.partitions)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"internal topics {missing} have no leader for every partition after "
                                   f"{wait_s:.0f} s (is the cluster healthy?)")
            time.sleep(0.2)
    finally:
        admin.close()


def _has_leaders(description: dict[str, Any] | None, partitions: int) -> bool:
    if not description or description.get("error_code", 0) != 0:
        return False
    found = description.get("partitions") or []
    leaders = [p.get("leader", p.get("leader_id", -1)) for p in found]
    return len(found) == partitions and all(leader is not None and leader >= 0 for leader in leaders)


def build_app(config: WorkerConfig) -> faust.App:
    partitions = _partition_count(config)
    app = faust.App(
        config.app_id,
        broker=[f"kafka://{server}" for server in config.kafka.bootstrap_servers.split(",")],
        broker_credentials=_credentials(config),
        store="rocksdb://",
        datadir=config.data_dir,
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=config.replication_factor,
        web_port=config.web_port,
        web_bind=config.web_host,
        web_host=config.web_host,
        producer_max_request_size=16 * 1024 * 1024,
        broker_commit_every=2000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=65_536,
        broker_max_poll_records=10_000,
        consumer_max_fetch_size=16 * 1024 * 1024,
        table_cleanup_interval=3600.0,
        consumer_auto_offset_reset="earliest",
        logging_config=logging_config(config.log_format),
    )
    commit_barrier.install()  # no offset committed before the table writes made for it are sent
    metrics = Metrics()
    progress = Progress(config.stall_after_s)
    delivery = DeliveryWatch(app)
    app.sensors.add(delivery)
    owner_of = partition_owner(partitions)
    backend, fallback = load_backends(config)
    scoring = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="trail-scoring")

    # In live mode each worker ticks its own partitions once a second through a co-partitioned internal topic, so
    # windows also close on the wall clock when a partition is idle (the tick runs in the partition's context).
    ticks_name = f"{config.app_id}-ticks"
    # Events and catalogue entries a producer put on a partition that does not own their item are forwarded to
    # the owner over these (streams/routing.py); marks travel there too (streams/partition_clock.py).
    rekey_name, catalogue_rekey_name = f"{config.app_id}-rekeyed", f"{config.app_id}-items-rekeyed"
    interactions = app.topic(config.topics.interactions, ticks_name, rekey_name, key_serializer="raw",
                             value_serializer="raw")
    ticks = app.topic(ticks_name, key_serializer="raw", value_serializer="json", partitions=partitions, internal=True)
    rekey = app.topic(rekey_name, key_serializer="raw", value_serializer="json", partitions=partitions, internal=True)
    items_topic = app.topic(config.topics.items, catalogue_rekey_name, key_serializer="raw", value_serializer="raw")
    catalogue_rekey = app.topic(catalogue_rekey_name, key_serializer="raw", value_serializer="raw",
                                partitions=partitions, internal=True)
    dlq = app.topic(config.topics.dlq, key_serializer="raw", value_serializer="json", partitions=1)
    trending = app.topic(config.topics.trending, key_serializer="raw", value_serializer="json", partitions=1)
    summaries = app.topic(config.summaries_topic, key_serializer="raw", value_serializer="json", partitions=1,
                          internal=True)

    state = app.Table("state", default=None, key_type=str, partitions=partitions)
    merger_state = app.Table("merger", default=None, key_type=str, partitions=1)
    _ensure_topics(config, {ticks_name: InternalTopic.expiring(partitions, 3_600_000),
                            rekey_name: InternalTopic.expiring(partitions, REKEY_RETENTION_MS),
                            catalogue_rekey_name: InternalTopic.expiring(partitions, REKEY_RETENTION_MS),
                            config.summaries_topic: InternalTopic.expiring(1, REKEY_RETENTION_MS),
                            **{table.changelog_topic_name: InternalTopic.changelog(table)
                               for table in (state, merger_state)}})
    page = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")

    clocks: dict[int, PartitionClock] = {}  # this process's view of each partition clock (the table is durable)

    def clock_of(partition: int) -> PartitionClock:
        clock = clocks.get(partition)
        if clock is None:
            clock = clocks[partition] = PartitionClock.from_state(partition, state.get(clock_key(partition)))
            if clock.own_closable is not None:
                # the mark sent before a crash may not have reached the others (marks merge as a maximum, so
                # repeating one is harmless): say it again before anything else
                remark.add(partition)
        return clock

    remark: set[int] = set()  # partitions whose clock was just loaded: their mark is sent again

    @app.on_partitions_revoked.connect
    async def forget_caches(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        """Another worker may own these partitions next: re-read everything from the tables afterwards."""
        clocks.clear()
        resident.clear()
        bucket_members.clear()
        legacy_items.clear()
        arrived.clear()
        merger_loaded[0] = False
        catalogue_seen.clear()
        progress.forget()

    @app.agent(items_topic)
    async def catalogue(stream: faust.StreamT) -> None:
        """Catalogue entries, applied by the partition that owns the item (forwarded there when a producer put
        them elsewhere)."""
        async for event in stream.events():
            partition = event.message.partition
            try:
                meta = parse_item_meta(event.value)
            except InvalidEvent as exc:
                await _dead_letter(dlq, event, exc)
                metrics.rejected += 1
            else:
                owner = owner_of(meta.item_id)
                if owner != partition:
                    await catalogue_rekey.send(value=bytes(event.value), partition=owner)
                    metrics.catalogue_forwarded += 1
                else:
                    state[meta_key(partition, meta.item_id)] = {"title": meta.title, "cat": meta.category}
                    record = resident.get(partition, {}).get(meta.item_id)
                    if record is not None:
                        record.title, record.category = meta.title, meta.category
            catalogue_seen[(event.message.topic, partition)] = event.message.offset
            progress.processed(event.message.tp, event.message.offset)

    catalogue_seen: dict[tuple[str, int], int] = {}  # (topic, partition) → offset the catalogue agent applied

    async def _catalogue_caught_up(partition: int, timeout_s: float = 10.0) -> None:
        """Before a close, let the catalogue agent apply every item entry already published for this partition
        (directly, or forwarded by another partition): the topics are consumed concurrently, and a close must not
        see an item without its category just because its catalogue entry is still in flight."""
        for tp in (TP(config.topics.items, partition), TP(catalogue_rekey_name, partition)):
            end = (await app.consumer.highwaters(tp)).get(tp) or 0
            key = (tp.topic, partition)
            deadline = time.monotonic() + timeout_s
            while catalogue_seen.get(key, -1) < end - 1:
                if time.monotonic() > deadline:
                    log.warning("catalogue %s of partition %d not caught up (at %s of %d) after %.0f s; closing "
                                "anyway", tp.topic, partition, catalogue_seen.get(key), end - 1, timeout_s)
                    catalogue_seen[key] = end - 1  # e.g. entries applied before a restart: don't wait again
                    break
                await asyncio.sleep(0.02)

    @app.agent(interactions)
    async def ingest(stream: faust.StreamT) -> None:
        """Events in batches: each item's open-window record is read and written once per batch, not per event."""
        async for batch in stream.take_events(config.batch_size, within=0.2):
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in batch:
                by_partition.setdefault(event.message.partition, []).append(event)
                progress.processed(event.message.tp, event.message.offset)
            for partition, events in by_partition.items():
                # Table writes go to the changelog partition of "the current event"; in a batch that is the last
                # event of the whole batch, so point it at this partition's events before writing.
                _current_event.set(weakref.ref(events[-1]))
                await _ingest_partition(partition, events)

    async def _ingest_partition(partition: int, events: list[faust.EventT]) -> None:
        clock = clock_of(partition)
        before = clock.significant()
        batch = _PartitionBatch(partition, clock)
        if partition in remark:
            remark.discard(partition)
            await _send_mark(batch)
        for event in events:
            topic = event.message.topic
            if topic == ticks_name:
                batch.flush_touched()
                if clock.observe_wall_clock(json.loads(event.value)["now_ms"], config.window):
                    await _send_mark(batch)
                await _close_ready(batch)
            elif topic == rekey_name:
                message = parse_rekeyed(json.loads(event.value))
                if isinstance(message, Forwarded):
                    metrics.forwarded_in += len(message.events)
                    for position, interaction in message.events:
                        await _count_forwarded(batch, message.source, position, interaction)
                else:
                    batch.flush_touched()
                    clock.receive_mark(*message)
                    await _close_ready(batch)
            else:
                await _ingest_message(batch, event)
        batch.flush_touched()
        await _send_outbox(batch)
        if clock.significant() != before:  # the clock is written when it matters: a write per event would halve
            state[clock_key(partition)] = clock.to_state()  # the speed

    class _PartitionBatch:
        """One partition's share of a taken batch: records touched (written once at the end) and the events that
        belong to other partitions, forwarded in order before this partition's next mark."""

        def __init__(self, partition: int, clock: PartitionClock) -> None:
            self.partition, self.clock = partition, clock
            self.touched: dict[str, OpenWindows] = {}
            self.outbox: dict[int, list[tuple[int, Interaction]]] = {}

        def flush_touched(self) -> None:
            for key, windows in self.touched.items():
                state[key] = windows.to_state()
            self.touched.clear()

    async def _ingest_message(batch: _PartitionBatch, event: faust.EventT) -> None:
        """One message of the partition's own input: one event or a batch of them."""
        partition, clock = batch.partition, batch.clock
        try:
            results = parse_interactions(event.value)
        except InvalidEvent as exc:  # the message as a whole is unreadable
            results = [exc]
        first_position = event.message.offset * POSITIONS_PER_MESSAGE
        for index, interaction in enumerate(results):
            position = first_position + index  # a batch's events share the offset: number them within it
            fresh = position > clock.off
            batch_index = index if len(results) > 1 else None
            if isinstance(interaction, InvalidEvent):
                if fresh:
                    await _dead_letter(dlq, event, interaction, batch_index)
                    metrics.rejected += 1
                    clock.rejected += 1
                    clock.off = position
                    state[clock_key(partition)] = clock.to_state()
                continue
            window = config.window.index_of(interaction.ts_ms)
            if clock.is_late(window):
                if fresh:
                    clock.late += 1
                    metrics.late += 1
            else:
                owner = owner_of(interaction.item_id)
                if owner == partition:
                    await _count(batch, interaction, window, position, None, fresh,
                                 lambda: _dead_letter(dlq, event, _item_limit_error(partition), batch_index))
                else:  # (re-sent after a crash too: the owner drops what it already applied)
                    batch.outbox.setdefault(owner, []).append((position, interaction))
                    metrics.forwarded_out += fresh
            clock.off = max(position, clock.off)
            if clock.observe(interaction.ts_ms, window, config.window):
                batch.flush_touched()
                await _send_mark(batch)
                await _close_ready(batch)

    async def _count_forwarded(batch: _PartitionBatch, source: int, position: int, interaction: Interaction) -> None:
        """An event another partition received for an item this one owns."""
        clock = batch.clock
        fresh = position > clock.forwarded_seen.get(source, -1)
        window = config.window.index_of(interaction.ts_ms)
        if clock.closed is not None and window <= clock.closed:
            return  # a copy re-sent after the source restarted: the window it counted in is already closed
        source_of = {"topic": config.topics.interactions, "partition": source,
                     "offset": position // POSITIONS_PER_MESSAGE, "batch_index": position % POSITIONS_PER_MESSAGE}
        await _count(batch, interaction, window, position, source, fresh, lambda: _dead_letter_raw(
            dlq, interaction.to_json(), _item_limit_error(batch.partition), source_of))
        if fresh:
            clock.forwarded_seen[source] = position

    def _item_limit_error(partition: int) -> InvalidEvent:
        return InvalidEvent("item_limit", f"partition {partition} already tracks {config.max_items} items "
                            "(TRAIL_MAX_ITEMS): events of new items are refused")

    async def _count(batch: _PartitionBatch, interaction: Interaction, window: int, position: int,
                     source: int | None, fresh: bool, refuse: Callable[[], Any]) -> None:
        """Count an event of an item this partition owns (``source``: the partition it was forwarded from)."""
        partition, clock = batch.partition, batch.clock
        key = open_key(partition, interaction.item_id)
        windows = batch.touched.get(key)
        if windows is None:
            records = resident.get(partition)
            record = records.get(interaction.item_id) if records is not None else None
            # A resident partition holds every record it has: an item missing there is new.
            stored = None if records is not None else state.get(key)
            if record is None and stored is None and not _tracked(partition, interaction.item_id):
                if clock.items >= config.max_items:
                    if fresh:
                        await refuse()
                        metrics.rejected += 1
                        clock.rejected += 1
                    return
                clock.items += 1
            if record is not None:
                windows = batch.touched[key] = record.open  # the resident record sees the event too
            else:
                windows = batch.touched[key] = OpenWindows.from_state(stored)
                if records is not None:  # a new item of a resident partition
                    meta = state.get(meta_key(partition, interaction.item_id)) or {}
                    records[interaction.item_id] = ItemRecord(
                        interaction.item_id, meta.get("title", ""), meta.get("cat"), open=windows)
                    arrived.setdefault(partition, set()).add(interaction.item_id)
        if apply_event(windows, interaction, window, position, source):
            metrics.events += 1
            metrics.direct += source is None

    async def _send_outbox(batch: _PartitionBatch) -> list[Any]:
        """Forward the events that belong to other partitions; returns the sends' delivery futures."""
        sent = [await rekey.send(value=message, partition=owner) for owner, forwarded in batch.outbox.items()
                for message in forward_messages(batch.partition, forwarded)]
        batch.outbox.clear()
        return sent

    async def _send_mark(batch: _PartitionBatch) -> None:
        """This partition's new mark to every other one, after the events it forwarded up to here — acknowledged
        before the moved clock can be written: the clock judges older events late from now on, so a redelivered
        event would no longer be forwarded, and a mark lost after the clock is stored would never be re-sent."""
        sent = await _send_outbox(batch)
        mark = mark_message(batch.partition, batch.clock.own_mark())
        sent += [await rekey.send(value=mark, partition=other)
                 for other in range(partitions) if other != batch.partition]
        await asyncio.gather(*sent)

    async def _close_ready(batch: _PartitionBatch) -> None:
        windows = batch.clock.windows_to_close(partitions)
        if windows:
            batch.flush_touched()
            for index in windows:
                await _close(batch.partition, index, batch.clock)

    def _tracked(partition: int, item_id: str) -> bool:
        """Whether the partition already tracks ``item_id`` (before its records are resident: from the table)."""
        if item_id in resident.get(partition, {}):
            return True
        bucket = trend_bucket(item_id)
        members = bucket_members.get((partition, bucket))
        if members is None:  # each bucket read and decoded once per assignment
            members = bucket_members[(partition, bucket)] = set(state.get(trend_bucket_key(partition, bucket)) or ())
        return item_id in members or legacy_trend_key(partition, item_id) in state

    if config.close_on_wall_clock:

        @app.timer(1.0)
        async def send_ticks() -> None:
            now_ms = int(time.time() * 1000)
            for tp in app.assignor.assigned_actives():
                if tp.topic == config.topics.interactions:
                    await ticks.send(value={"now_ms": now_ms}, partition=tp.partition)

    resident: dict[int, dict[str, ItemRecord]] = {}  # partition → its item records, read from the table once
    bucket_members: dict[tuple[int, int], set[str]] = {}  # (partition, bucket) → items with a trend state there
    legacy_items: dict[int, set[str]] = {}  # partition → items whose trend state is still in a ``t/`` key
    arrived: dict[int, set[str]] = {}  # partition → items that became resident since its last close

    async def _close(partition: int, index: int, clock: PartitionClock) -> None:
        started = time.monotonic()
        records = resident.get(partition)
        if records is None:
            records = resident[partition] = _load_partition(partition)
            arrived[partition] = set(records)
        loaded = time.monotonic()
        newcomers = (records[item_id] for item_id in arrived.pop(partition, ()) if item_id in records)
        if any(not record.title and record.category is None for record in newcomers):
            # A new item without its entry: is the entry still in flight? (The catalogue agent updates resident
            # records as it applies entries, so items checked at an earlier close need no wait.)
            await _catalogue_caught_up(partition)
        changed = [item_id for item_id, record in records.items() if record.closes_counts(index)]
        with _gc_paused():
            result = close_partition_window(records, index, config.trend, config.n_candidates)
            advanced = time.monotonic()
            for item_id in result.evicted:  # idle for too long
                if open_key(partition, item_id) in state:
                    del state[open_key(partition, item_id)]
            _write_trend_buckets(partition, records, {trend_bucket(i) for i in (*changed, *result.evicted)})
        written = time.monotonic()
        late, rejected = clock.report_stats(index)
        stats = WindowStats(counted=sum(w.count for w in result.windows), late=late, rejected=rejected,
                            items_tracked=len(result.windows))
        report = PartitionReport(partition, result.summary, result.candidates, stats, int(time.time() * 1000))
        # acknowledged before the clock records the close: a report lost after that would block the merger
        await (await summaries.send(key=str(partition).encode(), value=report.to_dict()))
        clock.closed = index
        clock.items = len(result.windows)
        state[clock_key(partition)] = clock.to_state()
        metrics.items_tracked[partition] = len(result.windows)
        metrics.windows_closed += 1
        metrics.close_seconds.append(time.monotonic() - started)
        log.info("partition %d closed window %d: %d items, %.0f events in %.3f s (load %.3f, trend %.3f, "
                 "write %.3f)", partition, index, len(result.windows), stats.counted, time.monotonic() - started,
                 loaded - started, advanced - loaded, written - advanced)

    def _write_trend_buckets(partition: int, records: dict[str, ItemRecord], buckets: set[int]) -> None:
        """Rewrite each bucket in ``buckets`` whole, from the resident records (an idle item's state, advanced in
        memory, describes itself: its last window is in it). Per-item keys of older workers in these buckets are
        deleted after their bucket is written, so a recovered prefix always has every item's latest state."""
        if not buckets:
            return
        contents: dict[int, dict[str, Any]] = {bucket: {} for bucket in buckets}
        for item_id, record in records.items():
            bucket = contents.get(trend_bucket(item_id))
            if bucket is not None and record.trend is not None:
                bucket[item_id] = record.trend_state()
        legacy = legacy_items.get(partition, set())
        for bucket, items in contents.items():
            state[trend_bucket_key(partition, bucket)] = items
            bucket_members[(partition, bucket)] = set(items)
        for item_id in [i for i in legacy if trend_bucket(i) in buckets]:
            if legacy_trend_key(partition, item_id) in state:
                del state[legacy_trend_key(partition, item_id)]
            legacy.discard(item_id)

    def _load_partition(partition: int) -> dict[str, ItemRecord]:
        """Every item record of one partition, from the table (once per assignment: then ``resident``)."""
        parts: dict[str, dict[str, Any]] = {"o": {}, "t": {}, "m": {}}
        buckets: dict[str, Any] = {}
        for key, value in list(state.items()):
            kind, owner, name = parse_key(key)
            if owner != str(partition) or value is None:
                continue
            if kind == "b":
                buckets.update(value)
            elif kind in parts:
                parts[kind][name] = value
        legacy_items[partition] = set(parts["t"])
        parts["t"].update(buckets)  # a bucket written after an item's legacy key holds its newer state
        records: dict[str, ItemRecord] = {}
        for item_id in parts["o"].keys() | parts["t"].keys():
            meta = parts["m"].get(item_id, {})
            record = ItemRecord(item_id, meta.get("title", ""), meta.get("cat"),
                                open=OpenWindows.from_state(parts["o"].get(item_id)))
            record.load_trend(parts["t"].get(item_id), config.trend)
            records[item_id] = record
        return records

    merger = WindowMerger(partitions, config.window, config.n_candidates, config.top_k,
                          board_size=config.trend.board_size, explanation_candidates=config.explanation_candidates)
    merger_store = MergerStore(merger_state)
    merger_loaded = [False]  # re-read from the table after any rebalance (the partition may have moved)

    @app.agent(summaries)
    async def merge(stream: faust.StreamT) -> None:
        async for event in stream.events():
            payload = event.value
            if not merger_loaded[0]:
                merger_store.load(merger)
                merger_loaded[0] = True
            report = PartitionReport.from_dict(payload)
            if merger.accept(report):
                merger_store.save_report(report)
            # model calls take seconds: off the event loop, so ingestion and the web views keep going meanwhile
            progress.busy_since = time.monotonic()
            try:
                records = await asyncio.get_running_loop().run_in_executor(
                    scoring, merger.publish_ready, backend, fallback)
            finally:
                progress.busy_since = None
            for record in records:
                # wait for the broker's acknowledgement: a list is published, or the worker stops saying why
                await (await trending.send(key=str(record["window"]["index"]).encode(), value=record))
                merger_state["latest"] = record  # durable: the page shows it again after a restart
                metrics.count_published(TrendingRecord.from_dict(record))
            merger_store.save_published(merger, records)
            progress.processed(event.message.tp, event.message.offset)

    @app.timer(1.0)
    async def sample_rates() -> None:
        metrics.sample()

    @app.timer(5.0)
    async def check_progress() -> None:
        """Streams with messages waiting that do not move make the worker not ready (see streams/progress.py)."""
        delivery.check_sender()
        assigned = [tp for tp in app.consumer.assignment() if not tp.topic.endswith("-changelog")
                    and "__assignor" not in tp.topic]
        if not assigned or not app.tables.recovery.completed.is_set():
            return
        try:
            ends = await asyncio.wait_for(app.consumer.highwaters(*assigned), timeout=5.0)
        except (asyncio.TimeoutError, Exception) as exc:  # the broker may be away for a moment: check again later
            log.debug("progress check skipped: %r", exc)
            return
        stalled = progress.check(ends)
        if stalled:
            log.warning("streams not moving for %.0f s with messages waiting: %s", config.stall_after_s,
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled))

    @app.page("/")
    async def page_view(web: Any, request: Any) -> Any:
        return web.html(page)

    @app.page("/trending")
    async def trending_view(web: Any, request: Any) -> Any:
        """The last published record (the JSON behind the page); ``{"window": null, "items": []}`` before one."""
        return web.json(merger_state.get("latest") or {"window": None, "items": []})

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        stalled = [f"{tp.topic}[{tp.partition}]" for tp in progress.stalled]
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing and not stalled
        return web.json({"status": "ok", "ready": ready, "stalled": stalled, "windows_published": metrics.published,
                         "scorer": backend.info.name, "events_per_second": round(metrics.events_per_second, 1)})

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.text(metrics.prometheus(backend.info), content_type="text/plain; version=0.0.4")

    app.trail_config = config  # type: ignore[attr-defined]
    app.trail_metrics = metrics  # type: ignore[attr-defined]
    return app


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a window close. A close allocates several objects per tracked item,
    none of them cyclic; with hundreds of thousands of long-lived objects in the process each automatic
    collection walks them all, which made a close several times slower than the work it does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _dead_letter(dlq: faust.TopicT, event: faust.EventT, error: InvalidEvent,
                       batch_index: int | None = None) -> None:
    message = event.message
    raw = event.value if isinstance(event.value, bytes) else bytes(str(event.value), "utf-8")
    await _dead_letter_raw(dlq, raw, error, {"topic": message.topic, "partition": message.partition,
                                             "offset": message.offset, "batch_index": batch_index})


async def _dead_letter_raw(dlq: faust.TopicT, raw: bytes, error: InvalidEvent, source: dict[str, Any]) -> None:
    await (await dlq.send(value={
        "reason": error.reason,
        "error": error.message,
        "source": source,
        "original_base64": base64.b64encode(raw).decode(),
        "original_text": raw.decode("utf-8", errors="replace")[:4096],
        "rejected_at_ms": int(time.time() * 1000),
    }))  # acknowledged before the clock counts the rejection as done: a redelivered event is not sent again


def _credentials(config: WorkerConfig) -> Any:
    settings = config.kafka
    if settings.security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = None
    if "SSL" in settings.security_protocol:
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    if "SASL" in settings.security_protocol:
        return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                     ssl_context=context, mechanism=settings.sasl_mechanism or "PLAIN")
    return faust.SSLCredentials(context)


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    """``faust -A streams.app`` looks up ``app``: the app (and its broker calls) is built then, from the
    environment, not when the module is imported (tests and tools import it without a broker)."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = build_app(WorkerConfig.from_env())
    return _app
