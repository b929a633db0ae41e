"""The merger's state stays bounded however many windows wait, and survives a kill -9: a lagging partition leaves
six windows pending with 200 candidates from each of the two others; every changelog value stays the size of one
report, the worker is killed and restarted, the late partition reports, and each window is published once."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from streams.kafka_io import Publisher, create_topics, read_topic
from streams.merge import PartitionReport
from streams.settings import KafkaSettings, TopicNames
from trail.signals import TrendConfig
from trail.tracker import ItemRecord, WindowStats, apply_event, close_partition_window
from trail.events import Interaction

from .conftest import KafkaEndpoint
from .streaming import Worker, read_windows, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 3
CANDIDATES = 200  # the worker's default
WINDOWS = range(2_000, 2_006)


def _reports(partition: int, seed: int) -> list[PartitionReport]:
    """A partition's reports for WINDOWS, from the real tracker over 400 items with random counts."""
    rng = random.Random(seed)
    records = {f"p{partition}-item{i}": ItemRecord(f"p{partition}-item{i}", f"Item {i} of {partition}", "cat")
               for i in range(400)}
    reports = []
    for window in WINDOWS:
        for item_id, record in records.items():
            for _ in range(rng.randrange(0, 6)):
                apply_event(record, Interaction(item_id, 0, user_id=f"u{rng.randrange(50)}"), window)
        close = close_partition_window(records, window, TrendConfig(), CANDIDATES)
        stats = WindowStats(counted=sum(w.count for w in close.windows), items_tracked=len(close.windows))
        reports.append(PartitionReport(partition, close.summary, close.candidates, stats, int(time.time() * 1000)))
    return reports


def _send(kafka: KafkaEndpoint, topic: str, reports: list[PartitionReport]) -> int:
    largest = 0
    with Publisher(KafkaSettings(kafka.bootstrap_servers)) as publisher:
        for report in reports:
            value = json.dumps(report.to_dict()).encode()
            largest = max(largest, len(value))
            publisher.send(topic, str(report.partition), value)
        publisher.flush()
    return largest


def _changelog(kafka: KafkaEndpoint, topic: str) -> list[tuple[str, bytes | None]]:
    return [(r.key.decode(), r.value) for r in read_topic(KafkaSettings(kafka.bootstrap_servers), topic,
                                                          idle_timeout_s=2)]


def test_pending_windows_keep_every_state_value_bounded_and_survive_a_kill_9(kafka: KafkaEndpoint,
                                                                              tmp_path: Path) -> None:
    prefix = "mrg"
    env = kafka.env(**topic_env(prefix), TRAIL_WINDOW="7d", TRAIL_CANDIDATES=str(CANDIDATES), TRAIL_TOP_K="20")
    create_topics(KafkaSettings(kafka.bootstrap_servers),
                  TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq"),
                  partitions=PARTITIONS)
    summaries, changelog = f"{prefix}-app-window-summaries", f"{prefix}-app-merger-changelog"
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        largest = _send(kafka, summaries, _reports(0, seed=1) + _reports(1, seed=2))  # partition 2 lags
        deadline = time.monotonic() + 120
        while len({k for k, _ in _changelog(kafka, changelog) if k.startswith('"r/')}) < 2 * len(WINDOWS):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(1)
        values = [v for _, v in _changelog(kafka, changelog) if v is not None]
        # one pending report per key: no value grows with the backlog (12 reports wait here)
        assert max(len(v) for v in values) < 1.2 * largest, (max(len(v) for v in values), largest)
        assert list(read_topic(KafkaSettings(kafka.bootstrap_servers), f"{prefix}-trending", idle_timeout_s=2)) == []
        worker.kill9()

        worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
        _send(kafka, summaries, _reports(2, seed=3))
        windows = read_windows(kafka.bootstrap_servers, f"{prefix}-trending", len(WINDOWS), workers=(worker,))
        assert sorted(windows) == list(WINDOWS)
        assert all(w["stats"]["partitions"] == PARTITIONS and len(w["items"]) == 20 for w in windows.values())
        records = list(read_topic(KafkaSettings(kafka.bootstrap_servers), f"{prefix}-trending", idle_timeout_s=2))
        assert len(records) == len(WINDOWS)  # each window published once
        # the merged reports' keys are deleted (tombstones in the changelog), so a restart reloads nothing stale
        latest: dict[str, bytes | None] = {}
        for key, value in _changelog(kafka, changelog):
            latest[key] = value
        assert [k for k, v in latest.items() if k.startswith('"r/') and v is not None] == []
    finally:
        worker.stop()
