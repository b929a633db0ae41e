"""Events in and out of a real broker through the real ``trail`` CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import islice
from pathlib import Path

import pytest

from streams.kafka_io import read_topic
from streams.settings import KafkaSettings
from trail.events import parse_interaction
from training.datasets import OnlineRetail

from .conftest import KafkaEndpoint, run_trail

pytestmark = [pytest.mark.kafka, pytest.mark.data]


def _topics(prefix: str) -> dict[str, str]:
    return {"TRAIL_TOPIC_INTERACTIONS": f"{prefix}-interactions", "TRAIL_TOPIC_ITEMS": f"{prefix}-items",
            "TRAIL_TOPIC_TRENDING": f"{prefix}-trending", "TRAIL_TOPIC_DLQ": f"{prefix}-dlq"}


def test_replay_10000_online_retail_events_round_trip(kafka: KafkaEndpoint, datasets_dir: Path) -> None:
    env = kafka.env(**_topics("rt"))
    created = run_trail("topics", "create", "--partitions", "3", env=env)
    assert created.returncode == 0, created.stderr.decode()
    assert b"rt-items: created" in created.stdout

    done = run_trail("replay", "online-retail", "--limit", "10000", "--no-progress", env=env)
    assert done.returncode == 0, done.stderr.decode()
    print(done.stdout.decode())
    assert b"and 10000 interactions to rt-interactions" in done.stdout

    dataset = OnlineRetail(datasets_dir / "online_retail" / "online_retail.csv.gz")
    sent = list(islice(dataset.interactions(), 10_000))
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers)
    received = list(read_topic(settings, "rt-interactions", max_records=10_000, idle_timeout_s=15))
    assert len(received) == 10_000
    assert {r.partition for r in received} == {0, 1, 2}

    by_key_sent: dict[str, list[bytes]] = defaultdict(list)
    for event in sent:
        by_key_sent[event.item_id].append(event.to_json())
    by_key_received: dict[str, list[bytes]] = defaultdict(list)
    partition_of: dict[str, set[int]] = defaultdict(set)
    for record in received:
        key = record.key.decode()
        by_key_received[key].append(record.value)
        partition_of[key].add(record.partition)
        assert parse_interaction(record.value).item_id == key
    assert by_key_received == by_key_sent  # same content, same per-key order
    assert all(len(parts) == 1 for parts in partition_of.values())

    items = list(read_topic(settings, "rt-items", idle_timeout_s=5))
    assert len(items) == sum(1 for _ in dataset.items())


def test_replay_then_tail_shows_exactly_the_published_events(kafka: KafkaEndpoint) -> None:
    env = kafka.env(**_topics("tail"))
    assert run_trail("topics", "create", "--partitions", "2", env=env).returncode == 0
    done = run_trail("replay", "stackexchange", "--limit", "1000", "--no-progress", env=env)
    assert done.returncode == 0, done.stderr.decode()
    tail = run_trail("tail", "interactions", "--raw", "--idle-timeout", "5", env=env)
    assert tail.returncode == 0, tail.stderr.decode()
    lines = tail.stdout.decode().splitlines()
    assert len(lines) == 1000
    assert all(json.loads(line)["event_type"] in {"answer", "vote", "like", "comment"} for line in lines)
    assert b"1000 record(s) from tail-interactions" in tail.stderr


def test_produce_validates_stdin_and_reports_the_bad_line(kafka: KafkaEndpoint) -> None:
    env = kafka.env(**_topics("prod"))
    good = b'{"item_id": "a", "ts": "2024-05-01T10:00:00Z"}\n{"item_id": "b", "ts": 1714557600}\n'
    done = run_trail("produce", env=env, input=good)
    assert done.returncode == 0, done.stderr.decode()
    bad = good + b'{"item_id": "c", "ts": "soon"}\n'
    failed = run_trail("produce", env=env, input=bad)
    assert failed.returncode == 1
    message = failed.stderr.decode().strip()
    assert "\n" not in message and "Traceback" not in message
    assert "stdin line 3" in message and "bad_timestamp" in message
    one = run_trail("produce", "--item-id", "z", "--ts", "2024-05-01T11:00:00Z", "--event-type", "click", env=env)
    assert one.returncode == 0, one.stderr.decode()
    values = [json.loads(r.value) for r in read_topic(KafkaSettings(kafka.bootstrap_servers), "prod-interactions",
                                                      idle_timeout_s=5)]
    assert [v["item_id"] for v in values] == ["a", "b", "a", "b", "z"]
    assert values[-1]["event_type"] == "click"


def test_unreachable_broker_is_one_line() -> None:
    import os

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = run_trail("topics", "create", env=env, timeout=120)
    assert done.returncode == 1
    message = done.stderr.decode().strip()
    assert message.count("\n") == 0 and "no Kafka broker at 127.0.0.1:1" in message


def test_replay_of_a_whole_dataset_with_its_progress_bar(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """No --limit: the bar has no total (it once crashed on exactly that, before sending anything)."""
    env = kafka.env(**_topics("whole"))
    assert run_trail("topics", "create", "--partitions", "2", env=env).returncode == 0
    rows = "".join(f"i{n % 7},{1_700_000_000 + n}\n" for n in range(300))
    (tmp_path / "events.csv").write_text("item,time\n" + rows)
    done = run_trail("replay", "csv", "--path", str(tmp_path / "events.csv"), "--map", "item_id=item,ts=time", env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"300 interactions" in done.stdout + done.stderr
