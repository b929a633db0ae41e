"""The real Faust worker against the real broker: replayed Online Retail weeks give exactly the offline signals;
a kill -9 mid-replay loses and double-counts nothing; 3 partitions over 2 workers equal 1 over 1; bad input goes
to the DLQ while every valid event counts."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest

from streams.kafka_io import Publisher, create_topics, read_topic
from streams.merge import SIGNALS_SHOWN
from streams.settings import KafkaSettings, TopicNames
from trail.replay import replay_windows
from trail.windows import WindowSpec
from training.datasets import OnlineRetail

from .conftest import DATASETS, KafkaEndpoint, run_trail
from .streaming import Worker, read_windows, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.data, pytest.mark.slow]

EVENTS = 60_000  # about five and a half weeks of Online Retail: five weekly windows close
WORKER_ENV = {"TRAIL_WINDOW": "7d", "TRAIL_CANDIDATES": "100", "TRAIL_TOP_K": "20", "TRAIL_BOARD_SIZE": "200"}


@pytest.fixture(scope="module")
def retail(datasets_dir: Path) -> OnlineRetail:
    return OnlineRetail(datasets_dir / "online_retail" / "online_retail.csv.gz")


@pytest.fixture(scope="module")
def offline(retail: OnlineRetail) -> dict[int, object]:
    """The same events through trail.tracker in-process: the reference every worker run must equal."""
    windows = replay_windows(islice(retail.interactions(), EVENTS), WindowSpec.parse("7d"), items=retail.items(),
                             n_candidates=100)
    return {w.index: w for w in windows}


def _prepare(kafka: KafkaEndpoint, prefix: str, partitions: int) -> dict[str, str]:
    env = kafka.env(**topic_env(prefix), **WORKER_ENV)
    topics = TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq")
    create_topics(KafkaSettings(kafka.bootstrap_servers), topics, partitions=partitions)
    return env


def _replay(env: dict[str, str], limit: int = EVENTS, batch: int = 1) -> None:
    done = run_trail("replay", "online-retail", "--limit", str(limit), "--batch", str(batch), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr.decode()


SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "streams" / "trending.schema.json").read_text())


def _assert_matches_offline(windows: dict[int, dict], offline: dict[int, object]) -> None:
    import jsonschema

    assert sorted(windows) == sorted(offline)
    for index, record in windows.items():
        jsonschema.validate(record, SCHEMA)
        reference = offline[index]
        assert record["stats"]["events_counted"] == reference.stats.counted
        assert record["stats"]["items_tracked"] == reference.stats.items_tracked
        signals = {s.item_id: s.to_dict() for s in reference.signals}
        assert len(record["items"]) == 20
        for item in record["items"]:
            expected = signals[item["item_id"]]
            assert item["signals"] == {name: expected[name] for name in SIGNALS_SHOWN}, item["item_id"]
            assert item["faithfulness"]["all_verified"] is True
        assert {i["item_id"] for i in record["items"]} <= {c.item_id for c in reference.candidates}


def test_replayed_weeks_equal_the_offline_signals(kafka: KafkaEndpoint, offline: dict, tmp_path: Path) -> None:
    env = _prepare(kafka, "eq", partitions=1)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        _replay(env)
        windows = read_windows(kafka.bootstrap_servers, "eq-trending", len(offline), workers=(worker,))
        print(f"{len(windows)} windows published; first list head: {windows[min(windows)]['items'][0]}")
        _assert_matches_offline(windows, offline)
        assert worker.get("/trending")["window"]["index"] == max(offline)
        assert "trail_events_total" in worker.get("/metrics")
    finally:
        worker.stop()


def test_kill_9_mid_replay_loses_and_double_counts_nothing(kafka: KafkaEndpoint, offline: dict, tmp_path: Path) -> None:
    env = _prepare(kafka, "crash", partitions=2)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    _replay(env, limit=25_000)
    read_windows(kafka.bootstrap_servers, "crash-trending", 1, workers=(worker,))
    worker.kill9()  # no shutdown, no commit
    _replay_rest(env, skip=25_000)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        windows = read_windows(kafka.bootstrap_servers, "crash-trending", len(offline), workers=(worker,))
        _assert_matches_offline(windows, offline)
    finally:
        worker.stop()


def test_state_an_older_worker_wrote_per_item_continues_exactly(kafka: KafkaEndpoint, offline: dict,
                                                               tmp_path: Path) -> None:
    """Workers before bucketed trend state wrote one ``t/<partition>/<item>`` key per item. Such a state, made here
    by rewriting a stopped worker's changelog into that layout (its RocksDB removed, so the next worker recovers
    from the changelog), continues to exactly the offline lists, and its next closes move it into buckets."""
    import shutil

    from kafka import KafkaProducer

    env = _prepare(kafka, "legacy", partitions=2)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        _replay(env, limit=25_000)
        read_windows(kafka.bootstrap_servers, "legacy-trending", 1, workers=(worker,))
        # stop only once every replayed event is counted, so the changelog this test rewrites holds the same state
        # from run to run (a stop mid-batch left it wherever the batch was; the test recovers from it alone)
        _wait_counted(worker, 25_000)
    finally:
        worker.stop()
    changelog = "legacy-app-state-changelog"
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    bucket_writes = 0
    for record in read_topic(KafkaSettings(kafka.bootstrap_servers), changelog, idle_timeout_s=2):
        latest[record.key or b""] = (record.partition, record.value)
        bucket_writes += (record.key or b"").startswith(b'"b/') and bool(record.value)
    buckets = {key: value for key, value in latest.items() if key.startswith(b'"b/') and value}
    assert buckets, "the worker wrote no trend bucket"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    moved = 0
    for key, (partition, value) in buckets.items():
        owner = json.loads(key).split("/")[1]
        for item_id, trend in json.loads(value).items():
            producer.send(changelog, key=json.dumps(f"t/{owner}/{item_id}").encode(),
                          value=json.dumps(trend).encode(), partition=partition)
            moved += 1
        producer.send(changelog, key=key, value=None, partition=partition)  # the bucket is gone
    producer.flush()
    producer.close()
    shutil.rmtree(tmp_path / "state")
    _replay_rest(env, skip=25_000)
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        windows = read_windows(kafka.bootstrap_servers, "legacy-trending", len(offline), workers=(worker,))
        _assert_matches_offline(windows, offline)
    finally:
        worker.stop()
    rewritten = [r for r in read_topic(KafkaSettings(kafka.bootstrap_servers), changelog, idle_timeout_s=2)
                 if (r.key or b"").startswith(b'"b/') and r.value]
    print(f"{moved} item states moved into per-item keys; {len(rewritten)} bucket writes in the changelog")
    assert len(rewritten) > bucket_writes  # the closes after the restart wrote buckets again


def _wait_counted(worker: Worker, events: int, timeout_s: float = 120) -> None:
    """Until the worker's ``trail_events_total`` reaches ``events``."""
    import re
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = worker.get("/metrics") or ""
        match = re.search(r"^trail_events_total (\S+)", text, re.MULTILINE)
        if match and float(match.group(1)) >= events:
            time.sleep(3)  # counted when applied: the batch's table writes and their changelog sends follow
            return
        time.sleep(0.5)
    raise AssertionError(f"the worker did not count {events} events in {timeout_s} s:\n{worker.log_tail()}")


def _replay_rest(env: dict[str, str], skip: int) -> None:
    """Publish events skip..EVENTS of the dataset (the first part was published before the crash)."""
    settings = KafkaSettings(env["KAFKA_BOOTSTRAP_SERVERS"])
    retail = OnlineRetail(DATASETS / "online_retail" / "online_retail.csv.gz")
    with Publisher(settings) as publisher:
        for event in islice(retail.interactions(), skip, EVENTS):
            publisher.send(env["TRAIL_TOPIC_INTERACTIONS"], event.item_id, event.to_json())
        publisher.flush()


def test_three_partitions_over_two_workers_in_batches_equal_one_over_one(kafka: KafkaEndpoint, offline: dict,
                                                              tmp_path: Path) -> None:
    env = _prepare(kafka, "multi", partitions=3)
    first = Worker(env, tmp_path / "a", tmp_path / "a.log").start()
    second = Worker(env, tmp_path / "b", tmp_path / "b.log").start()
    try:
        _replay(env, batch=200)  # and in batches: JSON arrays of up to 200 events, grouped by partition
        windows = read_windows(kafka.bootstrap_servers, "multi-trending", len(offline), workers=(first, second))
        assert {w["stats"]["partitions"] for w in windows.values()} == {3}
        _assert_matches_offline(windows, offline)
    finally:
        first.stop()
        second.stop()


def test_bad_input_goes_to_the_dlq_and_every_valid_event_counts(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    env = _prepare(kafka, "dlq", partitions=1)
    env["TRAIL_WINDOW"] = "1h"
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    garbage = [b"not json", b"\xff\xfe\x00", b"[]", b'{"ts": "2024-01-01T00:00:00Z"}',
               b'{"item_id": "x", "ts": "2024-01-01T00:10:00Z", "weight": -3}',
               b'{"item_id": "x", "ts": "yesterday"}', b'{"item_id": "x", "ts": 1, "event_type": "teleport"}',
               b"{" * 5000, json.dumps({"item_id": "y" * 5000, "ts": 1704067200}).encode(), None]
    valid = [json.dumps({"item_id": f"i{n % 7}", "ts": 1704067200 + n * 60, "user_id": f"u{n % 13}"}).encode()
             for n in range(300)]  # 5 hours of events: four hourly windows close
    stream: list[bytes] = []
    for n, value in enumerate(valid):
        stream.append(value)
        if n % 30 == 0:
            stream.append(garbage[(n // 30) % len(garbage)])
    try:
        with Publisher(KafkaSettings(kafka.bootstrap_servers)) as publisher:
            publisher.send("dlq-items", "i0", None)  # a tombstone on the compacted catalogue: skipped, not refused
            for value in stream:
                publisher.send("dlq-interactions", "k", value)
            publisher.flush()
        windows = read_windows(kafka.bootstrap_servers, "dlq-trending", 4, workers=(worker,))
        dead = [json.loads(r.value) for r in read_topic(KafkaSettings(kafka.bootstrap_servers), "dlq-dlq",
                                                        idle_timeout_s=3)]
        assert len(dead) == len(stream) - len(valid)
        assert all(d["reason"] and d["source"]["topic"] == "dlq-interactions" for d in dead)
        assert {d["source"]["offset"] for d in dead} == {i for i, v in enumerate(stream) if v not in valid}
        assert [w["stats"]["events_counted"] for _, w in sorted(windows.items())] == [60.0, 60.0, 60.0, 60.0]
        assert 0 < sum(w["stats"]["rejected"] for w in windows.values()) <= len(dead)
        assert worker.health()["status"] == "ok"
    finally:
        worker.stop()


def test_new_items_beyond_the_item_limit_go_to_the_dlq(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """A flood of distinct item ids cannot grow a partition's state past TRAIL_MAX_ITEMS; known items still count."""
    env = _prepare(kafka, "cap", partitions=1)
    env.update(TRAIL_WINDOW="1h", TRAIL_MAX_ITEMS="5", TRAIL_CANDIDATES="5", TRAIL_TOP_K="3")
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    # hour 0: items i0..i4 (at the cap), then i5..i9 (refused), then i0 again; hour 1: one event closes hour 0
    items = [f"i{n}" for n in range(10)] + ["i0"]
    events = [{"item_id": item, "ts": 1704067200 + n * 60} for n, item in enumerate(items)]
    events.append({"item_id": "i1", "ts": 1704067200 + 3600})
    try:
        with Publisher(KafkaSettings(kafka.bootstrap_servers)) as publisher:
            for event in events:
                publisher.send("cap-interactions", event["item_id"], json.dumps(event).encode())
            publisher.flush()
        windows = read_windows(kafka.bootstrap_servers, "cap-trending", 1, workers=(worker,))
        dead = [json.loads(r.value) for r in read_topic(KafkaSettings(kafka.bootstrap_servers), "cap-dlq",
                                                        idle_timeout_s=3)]
        assert sorted(json.loads(d["original_text"])["item_id"] for d in dead) == [f"i{n}" for n in range(5, 10)]
        assert {d["reason"] for d in dead} == {"item_limit"}
        (window,) = windows.values()
        assert window["stats"]["events_counted"] == 6.0 and window["stats"]["items_tracked"] == 5
        assert window["items"][0]["item_id"] == "i0"  # two events
    finally:
        worker.stop()


def test_live_mode_closes_idle_windows_on_the_wall_clock(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    import time

    env = _prepare(kafka, "live", partitions=2)
    env.update(TRAIL_WINDOW="3s", TRAIL_LIVE="1")
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        now = (int(time.time()) // 3 + 1) * 3 + 0.5  # inside the next 3 s window: all 40 events share a window
        with Publisher(KafkaSettings(kafka.bootstrap_servers)) as publisher:
            for n in range(40):
                event = {"item_id": f"live{n % 4}", "ts": now + n * 0.01, "user_id": f"u{n}"}
                publisher.send("live-interactions", event["item_id"], json.dumps(event).encode())
            publisher.flush()
        # no event arrives after these: only the wall clock can close their window
        windows = read_windows(kafka.bootstrap_servers, "live-trending", 1, timeout_s=60, workers=(worker,))
        first = windows[min(windows)]
        assert first["stats"]["events_counted"] == 40.0
        assert [i["item_id"] for i in first["items"]] == ["live0", "live1", "live2", "live3"]
    finally:
        worker.stop()


def test_broker_restart_mid_stream_loses_nothing(offline: dict, tmp_path: Path) -> None:
    """A broker of its own (the session's is shared): stop it mid-replay, start it again on the same data."""
    from localstack import LocalKafka, free_port

    broker = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port()).start()
    endpoint = KafkaEndpoint(broker.bootstrap_servers, broker)
    try:
        env = _prepare(endpoint, "restart", partitions=2)
        worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
        try:
            _replay(env, limit=25_000)
            read_windows(broker.bootstrap_servers, "restart-trending", 1, workers=(worker,))
            assert broker.stop() is True
            broker.start()
            _replay_rest(env, skip=25_000)
            windows = read_windows(broker.bootstrap_servers, "restart-trending", len(offline), timeout_s=300,
                                   workers=(worker,))
            _assert_matches_offline(windows, offline)
        finally:
            worker.stop()
    finally:
        broker.stop()
