"""Thin kafka-python helpers for the CLI verbs: create topics, publish events, read a topic back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from trail.errors import TrailError

from .routing import murmur2_partition
from .settings import KafkaSettings, TopicNames

__all__ = ["KafkaUnavailable", "Publisher", "TopicRecord", "connect_client", "create_topics", "message_count", "pretty", "read_topic"]


class KafkaUnavailable(TrailError, RuntimeError):
    """No broker answered at the configured bootstrap servers."""


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


def create_topics(
    settings: KafkaSettings, topics: TopicNames, partitions: int = 3, replication_factor: int = 1
) -> dict[str, str]:
    """Create the four TRAIL topics; returns ``{name: "created" | "exists"}``. ``items`` is compacted so the
    latest catalogue entry per item survives forever; the trending topic has one partition (one record per
    window, read in order)."""
    specs = [
        NewTopic(topics.interactions, partitions, replication_factor),
        NewTopic(topics.items, partitions, replication_factor,
                 topic_configs={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}),
        NewTopic(topics.trending, 1, replication_factor),
        NewTopic(topics.dlq, 1, replication_factor),
    ]
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        outcome = {spec.name: "exists" for spec in specs if spec.name in existing}
        new = [spec for spec in specs if spec.name not in existing]
        if new:
            try:
                admin.create_topics(new, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass
            outcome.update({spec.name: "created" for spec in new})
        return outcome
    finally:
        admin.close()


class Publisher:
    """A keyed JSON producer that counts what the broker acknowledged and raises on the first failure."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        config: dict[str, Any] = {"acks": "all", "linger_ms": 20, "batch_size": 256 * 1024,
                                  "max_in_flight_requests_per_connection": 1, "retries": 5, **overrides}
        # max_in_flight 1 + retries: a retried batch can never overtake the next one, so per-key order holds
        self._producer = connect_client(KafkaProducer, settings, **config)
        self.acknowledged = 0
        self._error: BaseException | None = None
        self._partitions: dict[str, list[int]] = {}

    def send(self, topic: str, key: str | None, value: bytes | None) -> None:
        """``value`` None: a tombstone (on a compacted topic, a delete marker)."""
        if self._error is not None:
            raise self._error
        future = self._producer.send(topic, key=key.encode() if key is not None else None, value=value)
        future.add_callback(self._on_success)
        future.add_errback(self._on_error)

    def send_to(self, topic: str, partition: int, value: bytes) -> None:
        """A keyless message to an explicit partition (batches: every event in it belongs to that partition)."""
        if self._error is not None:
            raise self._error
        future = self._producer.send(topic, value=value, partition=partition)
        future.add_callback(self._on_success)
        future.add_errback(self._on_error)

    def partition_of(self, topic: str, key: str) -> int:
        """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client does)."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(self._producer.partitions_for(topic))
        return partitions[murmur2_partition(key, len(partitions))]

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout=timeout_s)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._producer.close(timeout=10)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_success(self, _metadata: Any) -> None:
        self.acknowledged += 1

    def _on_error(self, error: BaseException) -> None:
        self._error = error


def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    from_beginning: bool = True,
    max_records: int | None = None,
    idle_timeout_s: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[TopicRecord]:
    """Records of every partition of ``topic`` (no consumer group: reading commits nothing), until
    ``max_records`` were read or nothing arrived for ``idle_timeout_s``."""
    consumer = connect_client(KafkaConsumer, settings, group_id=None, enable_auto_commit=False, consumer_timeout_ms=200)
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign(partitions)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
        count = 0
        last_seen = time.monotonic()
        while not stop():
            if max_records is not None and count >= max_records:
                return
            got = False
            for message in consumer:
                got = True
                count += 1
                yield TopicRecord(message.topic, message.partition, message.offset, message.key,
                                  message.value, message.timestamp)
                if max_records is not None and count >= max_records:
                    return
            if got:
                last_seen = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last_seen > idle_timeout_s:
                return
    finally:
        consumer.close()


def message_count(settings: KafkaSettings, topic: str) -> int:
    """Messages the topic holds now (end minus beginning offset, over its partitions); 0 if it does not exist."""
    consumer = connect_client(KafkaConsumer, settings, enable_auto_commit=False)
    try:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            return 0
        partitions = [TopicPartition(topic, p) for p in ids]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str, wait_s: float = 10.0) -> list[TopicPartition]:
    deadline = time.monotonic() + wait_s
    while True:
        ids = consumer.partitions_for_topic(topic)
        if ids:
            return [TopicPartition(topic, p) for p in sorted(ids)]
        if time.monotonic() > deadline:
            raise KafkaError(f"topic {topic!r} does not exist on {consumer.config['bootstrap_servers']}")
        time.sleep(0.2)


def _admin(settings: KafkaSettings) -> KafkaAdminClient:
    return connect_client(KafkaAdminClient, settings, client_id="trail-cli")


def connect_client(client_class: Callable[..., Any], settings: KafkaSettings, **config: Any) -> Any:
    """Build a kafka-python client, turning "no broker answered" into :class:`KafkaUnavailable`."""
    try:
        return client_class(**settings.client_config(), **config)
    except KafkaTimeoutError as exc:
        if "bootstrap" not in str(exc):
            raise
        raise KafkaUnavailable(
            f"no Kafka broker at {settings.bootstrap_servers} answered within {settings.bootstrap_timeout_ms} ms "
            "(is it running? `make kafka-up`)"
        ) from None


def pretty(record: TopicRecord) -> str:
    """A record as a header line and indented JSON (or the raw text when it is not JSON)."""
    key = record.key.decode(errors="replace") if record.key is not None else "-"
    header = f"── {record.topic}[{record.partition}]@{record.offset} key={key}"
    try:
        body = json.dumps(json.loads(record.value), indent=2, ensure_ascii=False)
    except ValueError:
        body = record.value.decode(errors="replace")
    return f"{header}\n{body}"

