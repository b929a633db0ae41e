"""The refresh loop against real services: events replayed into a real broker, ``trail refresh`` reading them back
(the ``kafka`` dataset adapter), a real Triton server loading what the gate lets through, rollback.

The tiny backbone writes nonsense, so its explanations verify nothing (claim precision 0 for every model): the
gate tests below decide on the forecast (NDCG@20, MAE), and the explanation margins are opened wide on purpose.
The gate's own rule on every metric is tested without services in ``test_gate_rule``.
"""

from __future__ import annotations

import doctest
import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localstack import LocalKafka, LocalTriton, free_port
from serving.triton_repository import RETIRED_FOLDER, latest_version, load_on_triton
from streams.kafka_io import Publisher, create_topics
from streams.settings import KafkaSettings, TopicNames
from trail.windows import WindowSpec
from training import gate
from training.datasets import open_dataset
from training.datasets.kafka_topics import KafkaReadError, KafkaTopics
from training.examples import build_examples
from training.export import export_model
from training.train import TrainConfig, train

from .conftest import PROJECT_ROOT, KafkaEndpoint, run_trail
from .streaming import Worker, read_windows, topic_env
from .test_deploy_stream import _prepare, _publish_hours
from .test_model import TINY, _examples

pytestmark = [pytest.mark.kafka, pytest.mark.data]

DAY = WindowSpec.parse("1d")
LIMIT = 60_000  # Online Retail's first 60,000 order lines: 48 days, 45 daily windows with a label
WIDE_TEXT_MARGINS = ("--margin-precision", "1", "--margin-verified", "1")


def _topics(prefix: str) -> TopicNames:
    return TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq")


def _replayed(kafka: KafkaEndpoint, prefix: str, limit: int = LIMIT, partitions: int = 3) -> dict[str, str]:
    """Online Retail's first ``limit`` events replayed into fresh topics by ``trail replay``; the env to reach them."""
    create_topics(KafkaSettings(kafka.bootstrap_servers), _topics(prefix), partitions=partitions)
    env = kafka.env(**topic_env(prefix), TRAIL_WINDOW="1d")
    done = run_trail("replay", "online-retail", "--limit", str(limit), env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return env


def test_gate_rule() -> None:
    assert doctest.testmod(gate).failed == 0
    serving = {"ndcg@20": 0.8, "mae_log1p": 0.5, "claim_precision": 0.97, "fully_verified": 0.9}
    assert gate.decide(serving, serving).passed  # as good is good enough
    worse_text = {**serving, "claim_precision": 0.95}
    assert gate.decide(worse_text, serving).failures == ("claim_precision 0.9500 < serving 0.9700 - margin 0",)
    assert gate.decide(worse_text, serving, gate.GateMargins(claim_precision=0.03)).passed
    assert not gate.decide({**serving, "mae_log1p": 0.51}, serving).passed
    assert not gate.decide({**serving, "fully_verified": 0.5}, serving).passed
    assert gate.decide(worse_text, None).passed  # nothing serves yet


def test_examples_from_the_topic_equal_the_file_adapters(kafka: KafkaEndpoint, datasets_dir: Path) -> None:
    env = _replayed(kafka, "rfx", limit=20_000)
    settings, topics = KafkaSettings(kafka.bootstrap_servers), _topics("rfx")
    with Publisher(settings) as publisher:  # what the worker would dead-letter is skipped and counted the same way
        for value in (b"not json", b'{"ts": 1291191960}', b'[{"item_id": "85123A", "ts": "yesterday"}]'):
            publisher.send(topics.interactions, "x", value)
        publisher.flush()
    file_source = open_dataset("online-retail", datasets_dir / "online_retail" / "online_retail.csv.gz")
    expected, _ = build_examples(itertools.islice(file_source.interactions(), 20_000), DAY, file_source.items())
    source = KafkaTopics(settings, topics)
    examples, _ = build_examples(source.interactions(), DAY, source.items())
    assert len(examples) > 5_000 and examples == expected
    assert source.read_messages == 20_003
    assert dict(source.skipped) == {"not_json": 1, "missing_field": 1, "bad_timestamp": 1}

    # from mid-stream: every partition first reads thousands of messages before the range (wall-clock record
    # timestamps: offsets-for-times cannot skip them), while the others already hold events in range
    windows = sorted({e.window_index for e in expected})  # 7 labelled days; start at the 4th
    since, until = DAY.start_of(windows[3]), DAY.end_of(windows[-1] + 1)
    in_range = KafkaTopics(settings, topics, since_ms=since, until_ms=until)
    ranged, _ = build_examples(in_range.interactions(), DAY, in_range.items())
    events = (e for e in itertools.islice(file_source.interactions(), 20_000) if since <= e.ts_ms < until)
    assert ranged == build_examples(events, DAY, file_source.items())[0] and 0 < len(ranged) < len(examples)
    assert env  # the replay ran with the worker's topic settings


def test_offsets_for_times_skip_what_is_before_the_range(kafka: KafkaEndpoint) -> None:
    """Records stamped with their event time (as many producers do): the read starts near ``since`` on every
    partition, and the examples are those of the events in range, however unevenly the partitions fill."""
    from kafka import KafkaProducer

    from trail.events import Interaction

    settings, topics = KafkaSettings(kafka.bootstrap_servers), _topics("rft")
    create_topics(settings, topics, partitions=2)
    start = DAY.start_of(20_000)
    events = [Interaction(f"i{n % 9}", start + n * 600_000 + n % 7, user_id=f"u{n % 13}")
              for n in range(30 * 144)]  # 30 days, one event every 10 minutes, nine items on two partitions
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        for event in events:
            producer.send(topics.interactions, key=event.item_id.encode(), value=event.to_json(),
                          timestamp_ms=event.ts_ms)
        producer.flush()
    finally:
        producer.close()
    since, until = start + 12 * DAY.size_ms, start + 25 * DAY.size_ms
    source = KafkaTopics(settings, topics, since_ms=since, until_ms=until)
    examples, _ = build_examples(source.interactions(), DAY)
    assert examples == build_examples((e for e in events if since <= e.ts_ms < until), DAY)[0] and examples
    assert source.read_messages == len(events) - 12 * 144  # the 12 days before the range were never read
    assert (source.first_event_ms, source.last_event_ms) == (min(e.ts_ms for e in events if e.ts_ms >= since),
                                                             max(e.ts_ms for e in events if e.ts_ms < until))


def test_a_broker_gone_mid_read_is_one_clear_error(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port()).start()
    try:
        settings, topics = KafkaSettings(broker.bootstrap_servers), _topics("gone")
        create_topics(settings, topics, partitions=1)
        with Publisher(settings) as publisher:  # ~8 MB: several fetches (1 MB a partition each)
            for n in range(60_000):
                event = {"item_id": f"i{n % 50}", "ts": 1_700_000_000 + n, "attributes": {"pad": "x" * 80}}
                publisher.send(topics.interactions, event["item_id"], json.dumps(event).encode())
            publisher.flush()
        events = KafkaTopics(settings, topics, read_timeout_s=3).interactions()
        next(events)
        broker.kill()
        with pytest.raises(KafkaReadError, match="stopped answering mid-read"):
            for _ in events:
                pass
    finally:
        broker.stop()


@pytest.mark.triton
@pytest.mark.slow
def test_refresh_gates_publishes_to_triton_and_rolls_back(kafka: KafkaEndpoint, triton: LocalTriton,
                                                         triton_repository: Path, tmp_path: Path) -> None:
    name = "refresh_tiny"
    model_dir = triton_repository / name
    env = {**_replayed(kafka, "rfg"), "TRAIL_MODEL_REPOSITORY": str(triton_repository), "TRAIL_MODEL_NAME": name}
    train(TINY, TrainConfig(steps=1, batch_size=4, per_window=8), _examples(), tmp_path / "v1")
    export_model(tmp_path / "v1", triton_repository, name, verify_texts=1)
    load_on_triton(triton.url, name)
    common = ("refresh", "--last-windows", "20", "--steps", "40", "--head-learning-rate", "0.03",
              "--explain-per-window", "2", "--runs", str(tmp_path / "runs"), "--triton", triton.url)

    worse = run_trail(*common, "--shuffle-labels", *WIDE_TEXT_MARGINS, env=env)
    assert worse.returncode == 3, worse.stderr.decode()[-3000:]
    assert b"gate: REFUSED: ndcg@20" in worse.stderr and b"refused: gate refused" in worse.stdout
    assert latest_version(model_dir) == 1 and triton.model_ready(name, "1")
    (refused_run,) = (tmp_path / "runs").iterdir()
    assert {"report.md", "gate.json", "candidate"} <= {p.name for p in refused_run.iterdir()}
    assert not json.loads((refused_run / "gate.json").read_text())["passed"]

    # the refused candidate, deployed by hand, is now the (bad) serving model; a refresh warm-starts from it
    by_hand = run_trail("export", str(refused_run / "candidate"), "--repository", str(triton_repository),
                        "--model-name", name, "--triton", triton.url, env=env)
    assert by_hand.returncode == 0 and triton.model_ready(name, "2"), by_hand.stderr.decode()[-2000:]
    better = run_trail(*common, *WIDE_TEXT_MARGINS, env=env)
    assert better.returncode == 0, better.stderr.decode()[-3000:]
    assert b"gate: PASSED" in better.stderr and b"published version 3 (parent 2)" in better.stdout
    assert latest_version(model_dir) == 3 and triton.model_ready(name, "3")
    manifest = json.loads((model_dir / "3" / "manifest.json").read_text())
    assert manifest["parent_version"] == 2 and manifest["gate"]["passed"]
    assert manifest["gate"]["candidate"]["ndcg@20"] >= manifest["gate"]["serving"]["ndcg@20"]
    assert manifest["data"]["events_sha256"] == manifest["events_sha256"] and manifest["data"]["since"]
    assert (model_dir / "3" / "checkpoint" / "trail_config.json").exists()  # the next refresh warm-starts here

    out_of_time = run_trail(*common, "--max-minutes", "0.001", env=env)
    assert out_of_time.returncode == 1 and b"time budget" in out_of_time.stderr
    assert len(out_of_time.stderr.decode().strip().splitlines()[-1]) < 300 and b"Traceback" not in out_of_time.stderr
    assert latest_version(model_dir) == 3

    back = run_trail("deploy", "--rollback", "--triton", triton.url, env=env)
    assert back.returncode == 0 and b"version 3 retired" in back.stdout, back.stderr.decode()[-2000:]
    assert latest_version(model_dir) == 2 and (model_dir / RETIRED_FOLDER / "3").is_dir()
    assert triton.model_ready(name, "2") and not triton.model_ready(name, "3")
    listing = run_trail("deploy", env=env)
    assert b"*   2" in listing.stdout


@pytest.mark.slow
def test_refresh_while_the_worker_runs_loses_no_window(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """A refresh reads the topic the worker consumes and publishes mid-stream: every window is still published
    once with all its events, and from the first window scored after the publication on, the output names v2."""
    repository = tmp_path / "repo"
    train(TINY, TrainConfig(steps=1, batch_size=4, per_window=8), _examples(), tmp_path / "v1")
    export_model(tmp_path / "v1", repository, model_name="tiny", verify_texts=1)
    env = _prepare(kafka, "rfs", TRAIL_BACKEND="onnx", TRAIL_MODEL_REPOSITORY=str(repository),
                   TRAIL_MODEL_NAME="tiny")
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        _publish_hours(kafka, "rfs-interactions", range(0, 8))
        read_windows(kafka.bootstrap_servers, "rfs-trending", 8, timeout_s=150, workers=(worker,))
        refresh = subprocess.Popen(
            [sys.executable, "-m", "trail_cli", "refresh", "--last-windows", "8", "--steps", "3", "--batch-size", "4",
             "--per-window", "8", "--candidates", "6", "--explain-per-window", "1", "--margin-ndcg", "1",
             "--margin-mae", "100", *WIDE_TEXT_MARGINS, "--runs", str(tmp_path / "runs")],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        feeder = threading.Thread(target=_publish_hours, args=(kafka, "rfs-interactions", range(8, 11)))
        feeder.start()  # events keep arriving while the refresh reads, trains and exports
        try:
            out, err = refresh.communicate(timeout=300)
        finally:
            refresh.kill()
            feeder.join()
        assert refresh.returncode == 0, err.decode()[-3000:]
        assert b"published version 2 (parent 1)" in out
        _publish_hours(kafka, "rfs-interactions", range(11, 14))
        windows = read_windows(kafka.bootstrap_servers, "rfs-trending", 14, timeout_s=180, workers=(worker,))
    finally:
        worker.stop()
    ordered = [windows[i] for i in sorted(windows)]
    assert sorted(windows) == list(range(min(windows), min(windows) + 14))  # no window lost
    versions = [r["scorer"]["version"] for r in ordered]
    first_v2 = versions.index("2")
    assert set(versions[:first_v2]) == {"1"} and set(versions[first_v2:]) == {"2"} and first_v2 >= 8
    assert all(not r["scorer"]["fallback"] for r in ordered)
    published = sum(1 + (item * (hour + 1)) % 5 for hour in range(14) for item in range(8))
    closing = 2  # _publish_hours adds one event at the start of the next hour: hours 8 and 11 (14 stays open)
    assert sum(r["stats"]["events_counted"] for r in ordered) == published + closing  # no event lost


def test_the_embedded_backend_follows_a_rollback(tmp_path: Path) -> None:
    from serving.onnx_backend import OnnxBackend
    from serving.triton_repository import next_version, retire_latest

    train(TINY, TrainConfig(steps=1, batch_size=4, per_window=8), _examples(), tmp_path / "ckpt")
    for _ in range(2):
        export_model(tmp_path / "ckpt", tmp_path / "repo", model_name="tiny", verify_texts=1)
    backend = OnnxBackend(tmp_path / "repo", "tiny", threads=1)
    assert backend.refresh() == 2
    assert retire_latest(tmp_path / "repo" / "tiny") == (2, 1)
    assert backend.refresh() == 1 and backend.info.version == "1"  # at its next window
    assert next_version(tmp_path / "repo" / "tiny") == 3  # the retired number is not reused
