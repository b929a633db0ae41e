"""The worker's topics and tables, declared once, and the broker calls that must precede Faust's subscription.

Events and catalogue entries a producer put on a partition that does not own their item are forwarded to the
owner over the re-key topics (:mod:`streams.routing`); marks travel there too (:mod:`trail.partition_clock`). In
live mode each worker ticks its own partitions once a second through a co-partitioned internal topic, so windows
also close on the wall clock when a partition is idle (the tick runs in the partition's context).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT

from trail.errors import TrailError

from .config import WorkerConfig

__all__ = ["REKEY_RETENTION_MS", "InternalTopic", "WorkerTopics", "ensure_topics", "partition_count"]

# Forwarded events wait in the re-key topic until their owner counts them: keep them as long as a worker may be down.
REKEY_RETENTION_MS = 7 * 86_400_000
TICK_RETENTION_MS = 3_600_000


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


@dataclass(frozen=True)
class WorkerTopics:
    """Every Faust topic and table of the worker."""

    interactions: faust.TopicT  # the input, the ticks and the re-keyed events: one co-partitioned stream
    ticks: faust.TopicT
    rekey: faust.TopicT
    items: faust.TopicT  # the catalogue and the catalogue entries forwarded to their owner
    catalogue_rekey: faust.TopicT
    dlq: faust.TopicT
    trending: faust.TopicT
    summaries: faust.TopicT  # partition reports → the merger (one partition, so one worker merges)
    state: TableT
    merger_state: TableT

    @classmethod
    def declare(cls, app: faust.App, config: WorkerConfig, partitions: int) -> WorkerTopics:
        ticks_name = f"{config.app_id}-ticks"
        rekey_name, catalogue_rekey_name = f"{config.app_id}-rekeyed", f"{config.app_id}-items-rekeyed"
        json_topic: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "json"}
        raw_topic: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        return cls(
            interactions=app.topic(config.topics.interactions, ticks_name, rekey_name, **raw_topic),
            ticks=app.topic(ticks_name, partitions=partitions, internal=True, **json_topic),
            rekey=app.topic(rekey_name, partitions=partitions, internal=True, **json_topic),
            items=app.topic(config.topics.items, catalogue_rekey_name, **raw_topic),
            catalogue_rekey=app.topic(catalogue_rekey_name, partitions=partitions, internal=True, **raw_topic),
            dlq=app.topic(config.topics.dlq, partitions=1, **json_topic),
            trending=app.topic(config.topics.trending, partitions=1, **json_topic),
            summaries=app.topic(config.summaries_topic, partitions=1, internal=True, **json_topic),
            state=app.Table("state", default=None, key_type=str, partitions=partitions),
            merger_state=app.Table("merger", default=None, key_type=str, partitions=1),
        )

    @property
    def ticks_name(self) -> str:
        return self.ticks.get_topic_name()

    @property
    def rekey_name(self) -> str:
        return self.rekey.get_topic_name()

    @property
    def catalogue_rekey_name(self) -> str:
        return self.catalogue_rekey.get_topic_name()

    def internal(self, partitions: int) -> dict[str, InternalTopic]:
        """The topics the worker creates itself before Faust subscribes (see :func:`ensure_topics`)."""
        return {self.ticks_name: InternalTopic.expiring(partitions, TICK_RETENTION_MS),
                self.rekey_name: InternalTopic.expiring(partitions, REKEY_RETENTION_MS),
                self.catalogue_rekey_name: InternalTopic.expiring(partitions, REKEY_RETENTION_MS),
                self.summaries.get_topic_name(): InternalTopic.expiring(1, REKEY_RETENTION_MS),
                **{table.changelog_topic_name: InternalTopic.changelog(table)
                   for table in (self.state, self.merger_state)}}


def partition_count(config: WorkerConfig) -> int:
    """``TRAIL_PARTITIONS``, or the partitions of the interactions topic on the broker."""
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


def ensure_topics(config: WorkerConfig, topics: dict[str, InternalTopic], wait_s: float = 60.0) -> None:
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
