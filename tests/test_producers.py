"""Events from any producer count: the same Online Retail weeks published with librdkafka (confluent-kafka, CRC32
partitioner), kafka-python without a key (random partitions) and the Kafka CLI console producer (Java, murmur2)
give exactly the offline lists, with nothing in the DLQ; /metrics shows which events took the extra hop."""

from __future__ import annotations

import json
import os
import subprocess
from itertools import islice
from pathlib import Path

import pytest

from localstack.kafka import DEFAULT_LIBS
from streams.kafka_io import create_topics, read_topic
from streams.settings import KafkaSettings, TopicNames
from trail.replay import replay_windows
from trail.windows import WindowSpec
from training.datasets import OnlineRetail

from .conftest import KafkaEndpoint
from .streaming import Worker, read_windows, topic_env
from .test_stream_worker import WORKER_ENV, _assert_matches_offline

pytestmark = [pytest.mark.kafka, pytest.mark.data, pytest.mark.slow]

EVENTS = 36_000  # about three weeks of Online Retail: two weekly windows close


@pytest.fixture(scope="module")
def retail(datasets_dir: Path) -> OnlineRetail:
    return OnlineRetail(datasets_dir / "online_retail" / "online_retail.csv.gz")


def _confluent_producer(bootstrap: str):
    from confluent_kafka import Producer

    # librdkafka's defaults: partitioner consistent_random (CRC32 of the key), not Java's murmur2
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})


def _publish_confluent(bootstrap: str, topic: str, keyed_values: list[tuple[str, bytes]]) -> None:
    producer = _confluent_producer(bootstrap)
    errors: list[str] = []
    for key, value in keyed_values:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value,
                                 on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0 and errors == []


def _publish_kafka_python_unkeyed(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_in_flight_requests_per_connection=1)
    try:
        for value in values:
            producer.send(topic, value=value)  # no key: each message on a random partition
        producer.flush(60)
    finally:
        producer.close(10)


def _publish_console_producer(bootstrap: str, topic: str, keyed_values: list[tuple[str, bytes]]) -> None:
    lines = b"".join(key.encode() + b"|" + value + b"\n" for key, value in keyed_values)
    done = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{DEFAULT_LIBS}/*", "org.apache.kafka.tools.ConsoleProducer",
         "--bootstrap-server", bootstrap, "--topic", topic, "--property", "parse.key=true",
         "--property", "key.separator=|", "--producer-property", "acks=all"],
        input=lines, capture_output=True, timeout=180, env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx256m"})
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _samples(text: str) -> dict[str, float]:
    """Prometheus text → {metric with labels: value}."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_events_from_librdkafka_kafka_python_and_the_console_producer_all_count(
        kafka: KafkaEndpoint, retail: OnlineRetail, tmp_path: Path) -> None:
    offline = {w.index: w for w in replay_windows(islice(retail.interactions(), EVENTS), WindowSpec.parse("7d"),
                                                  items=retail.items(), n_candidates=100)}
    prefix = "px"
    env = kafka.env(**topic_env(prefix), **WORKER_ENV)
    topics = TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq")
    create_topics(KafkaSettings(kafka.bootstrap_servers), topics, partitions=3)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        # the catalogue through librdkafka too: most entries land on a partition that does not own the item
        _publish_confluent(kafka.bootstrap_servers, topics.items,
                           [(meta.item_id, json.dumps(meta.to_dict()).encode()) for meta in retail.items()])
        events = [(e.item_id, e.to_json()) for e in islice(retail.interactions(), EVENTS)]
        third = len(events) // 3
        # in event-time order, one producer after the other (each flushed before the next starts)
        _publish_confluent(kafka.bootstrap_servers, topics.interactions, events[:third])
        _publish_kafka_python_unkeyed(kafka.bootstrap_servers, topics.interactions,
                                      [value for _, value in events[third:2 * third]])
        _publish_console_producer(kafka.bootstrap_servers, topics.interactions, events[2 * third:])

        windows = read_windows(kafka.bootstrap_servers, topics.trending, len(offline), workers=(worker,))
        _assert_matches_offline(windows, offline)
        for index, record in windows.items():  # titles and categories came through the forwarded catalogue
            signals = {s.item_id: s for s in offline[index].signals}
            assert all(item["title"] == signals[item["item_id"]].title for item in record["items"])
        dead = list(read_topic(KafkaSettings(kafka.bootstrap_servers), topics.dlq, idle_timeout_s=2))
        assert dead == []
        metrics = _samples(worker.get("/metrics"))
        routed = {path: metrics[f'trail_events_routed_total{{path="{path}"}}'] for path in ("direct", "forwarded")}
        print(f"routed: {routed}, catalogue forwarded: {metrics['trail_catalogue_forwarded_total']}")
        assert routed["direct"] > 0 and routed["forwarded"] > 0
        assert routed["direct"] + routed["forwarded"] == EVENTS
        assert metrics["trail_catalogue_forwarded_total"] > 0
    finally:
        worker.stop()
