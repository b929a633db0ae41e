"""A real 3-broker KRaft cluster on loopback, topics replicated 3 times with min.insync.replicas=2, the worker
producing with acks=all: kill -9 one broker mid-replay, then the one leading the state changelog, restart each;
the worker keeps publishing and every window equals the offline run (0 lost, 0 double-counted)."""

from __future__ import annotations

from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Iterator

import pytest

from localstack import LocalKafkaCluster
from streams.kafka_io import Publisher, create_topics
from streams.settings import KafkaSettings, TopicNames
from training.datasets import OnlineRetail

from .conftest import DATASETS, KafkaEndpoint
from .streaming import Worker, read_windows, topic_env
from .test_stream_worker import EVENTS, WORKER_ENV, _assert_matches_offline, offline, retail  # noqa: F401

pytestmark = [pytest.mark.kafka, pytest.mark.data, pytest.mark.slow]

PREFIX = "ha"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    nodes = LocalKafkaCluster(tmp_path_factory.mktemp("cluster"))
    for node in nodes.nodes:  # notice a killed broker within a few seconds, not the default 9 s
        node.extra_properties.update({"broker.session.timeout.ms": "4000", "broker.heartbeat.interval.ms": "500"})
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


def _publish(bootstrap: str, topics: TopicNames, start: int, stop: int) -> None:
    """Events start..stop of the dataset (the catalogue first), keyed by item, acks=all, retried through a leader
    election."""
    retail = OnlineRetail(DATASETS / "online_retail" / "online_retail.csv.gz")
    with Publisher(KafkaSettings(bootstrap), retries=100, retry_backoff_ms=300,
                   request_timeout_ms=10_000) as publisher:
        if start == 0:
            for meta in retail.items():
                publisher.send(topics.items, meta.item_id, meta.to_json())
            publisher.flush(timeout_s=180)
        for event in islice(retail.interactions(), start, stop):
            publisher.send(topics.interactions, event.item_id, event.to_json())
        publisher.flush(timeout_s=180)


def _leader_of_most(bootstrap: str, topic: str) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (description,) = admin.describe_topics([topic])
    finally:
        admin.close()
    leaders = Counter(p.get("leader", p.get("leader_id")) for p in description["partitions"])
    return leaders.most_common(1)[0][0]


def test_killing_a_broker_then_the_changelog_leader_loses_and_double_counts_nothing(
        cluster: LocalKafkaCluster, offline: dict, tmp_path: Path) -> None:  # noqa: F811
    endpoint = KafkaEndpoint(cluster.bootstrap_servers, None)
    env = endpoint.env(**topic_env(PREFIX), **WORKER_ENV, TRAIL_REPLICATION_FACTOR="3")
    topics = TopicNames(f"{PREFIX}-interactions", f"{PREFIX}-items", f"{PREFIX}-trending", f"{PREFIX}-dlq")
    create_topics(KafkaSettings(cluster.bootstrap_servers), topics, partitions=3, replication_factor=3)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start(timeout_s=180)
    trending = topics.trending
    try:
        _publish(cluster.bootstrap_servers, topics, 0, 20_000)
        read_windows(cluster.bootstrap_servers, trending, 1, workers=(worker,))

        cluster.node(2).kill()  # one broker, no shutdown
        _publish(cluster.bootstrap_servers, topics, 20_000, 40_000)
        assert len(read_windows(cluster.bootstrap_servers, trending, 3, workers=(worker,))) >= 3  # still going
        cluster.node(2).start()

        leader = _leader_of_most(cluster.bootstrap_servers, f"{PREFIX}-app-state-changelog")
        cluster.node(leader).kill()  # the broker leading the state changelog partitions
        _publish(cluster.bootstrap_servers, topics, 40_000, EVENTS)
        cluster.node(leader).start()

        windows = read_windows(cluster.bootstrap_servers, trending, len(offline), timeout_s=300, workers=(worker,))
        _assert_matches_offline(windows, offline)
        print(f"{len(windows)} windows equal the offline run; killed node 2, then node {leader} (changelog leader)")
    finally:
        worker.stop()
