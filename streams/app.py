"""The Faust application: ``faust -A streams.app worker`` (or ``trail worker``) — the wiring, nothing else.

Agents
- ``catalogue`` (:mod:`streams.catalogue`): the compacted ``items`` topic → item titles and categories in the state
  table (an entry on a partition that does not own its item is forwarded to the owner over ``<app>-items-rekeyed``).
- ``ingest`` (:mod:`streams.ingest`): the ``interactions`` topic, with the co-partitioned ``<app>-rekeyed`` and
  ``<app>-ticks`` → each partition's :class:`trail.window_driver.PartitionDriver` (the one the offline replay
  runs): validate (bad events to the DLQ with reason and source coordinates) → count in the item's event-time
  window on the partition owning the item (others forward it there: :mod:`streams.routing`) → when every
  partition's mark has passed a window's end (:mod:`trail.partition_clock`), close it for every item of the
  partition and send a report to the internal summaries topic.
- ``merge`` (:mod:`streams.merge_agent`): the summaries topic (one partition, so one worker merges) → when every
  partition has reported a window: global ranks, candidates, scores, explanations, checks → one record on
  ``trending-with-explanations``. Its state (:class:`streams.merge.MergerStore`) is one table key per pending report.

State lives in two RocksDB tables with changelogs. ``state`` (:mod:`streams.partition_store`, key layout in
:mod:`streams.state_keys`) holds, per partition and item, the open-window counts with the last source offset
applied to them (the only key an event touches), the River trend state in 1,024 buckets per partition, the
catalogue entry, and the partition clock. All of a partition's keys are written to the same changelog partition,
in order, so any recovered state is a prefix of the writes; with the per-record applied offsets that makes recovery
exact. A message to another topic that a later state write depends on (a report, a mark, forwarded events, a DLQ
entry) is acknowledged by the broker before that write is made: the driver yields it as an effect and is resumed
only once the ingest agent has carried it out. Every internal topic and both changelogs are created (and have
leaders) before Faust subscribes (:func:`streams.topics.ensure_topics`); nothing contacts the broker at import.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust

from serving.backend import Backend, FallbackChain
from serving.baseline import BaselineBackend
from serving.onnx_backend import OnnxBackend
from serving.triton_backend import TritonBackend, parse_triton_url
from trail.errors import ConfigError

from . import commit_barrier
from .catalogue import Catalogue
from .config import BACKEND_CHOICES, WorkerConfig
from .delivery import DeliveryWatch
from .ingest import Ingest
from .logs import logging_config
from .merge import WindowMerger
from .merge_agent import MergeAgent
from .metrics import Metrics
from .offset_holes import HoleFiller
from .partition_store import WorkerPartitions
from .progress import Progress
from .routing import partition_owner
from .topics import WorkerTopics, ensure_topics, partition_count
from .views import register_timers, register_views

__all__ = ["app", "build_app", "load_backends"]


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


def build_app(config: WorkerConfig) -> faust.App:
    """The worker's Faust app: topics and tables declared (internal ones created on the broker), agents, timers
    and web views registered. Not started: ``faust -A streams.app worker`` starts it."""
    partitions = partition_count(config)
    app = _faust_app(config, partitions)
    commit_barrier.install()  # no offset committed before the table writes made for it are sent
    topics = WorkerTopics.declare(app, config, partitions)
    ensure_topics(config, topics.internal(partitions))
    metrics, progress, delivery = Metrics(), Progress(config.stall_after_s), DeliveryWatch(app)
    app.sensors.add(delivery)
    owner_of = partition_owner(partitions)
    backend, fallback = load_backends(config)
    stores = WorkerPartitions(topics.state, config.driver_settings(partitions), owner_of, metrics)
    # messages Faust did not deliver, read back (offset_holes.py): the ingest stream's and the catalogue's
    holes, catalogue_holes = (HoleFiller.for_settings(config.kafka, config.app_id, watched, start_only=start_only,
                                                      generation=lambda: app.consumer_generation_id)
                              for watched, start_only in (
                                  ((config.topics.interactions, topics.ticks_name, topics.rekey_name), False),
                                  ((config.topics.items, topics.catalogue_rekey_name), True)))  # items: compacted
    catalogue = Catalogue(app, topics, stores, owner_of, metrics, progress, catalogue_holes)
    ingest = Ingest(config, topics, stores, catalogue, metrics, progress, holes)
    merge = MergeAgent(topics, WindowMerger.for_worker(config, partitions), backend, fallback, metrics, progress,
                       stopping=lambda: app.should_stop)  # set as the app's stop begins, before it waits for streams

    @app.on_partitions_revoked.connect
    async def forget_caches(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        """Another worker may own these partitions next: re-read everything from the tables afterwards."""
        for cache in (stores, catalogue, merge, progress, holes, catalogue_holes):
            cache.forget()

    @app.on_partitions_assigned.connect
    async def expect_committed_offsets(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        """Where each assigned input partition must continue: a first message past it is a hole."""
        await asyncio.gather(holes.assigned(assigned), catalogue_holes.assigned(assigned))

    app.agent(topics.items, name="catalogue")(catalogue.run)
    app.agent(topics.interactions, name="ingest")(ingest.run)
    app.agent(topics.summaries, name="merge")(merge.run)
    register_timers(app, config, topics, metrics, progress, delivery)
    register_views(app, topics, metrics, progress, backend)
    app.trail_config = config  # type: ignore[attr-defined]
    app.trail_metrics = metrics  # type: ignore[attr-defined]
    return app


def _faust_app(config: WorkerConfig, partitions: int) -> faust.App:
    return faust.App(
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
