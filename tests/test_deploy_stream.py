"""Deployment in a running stream (real broker, real worker, real Triton): a version exported mid-stream is picked
up between windows with no failed window; Triton killed mid-stream → fallback flagged, ingestion goes on, Triton
back → served by Triton again. The tiny model writes nonsense, so every published explanation must come from the
composer (a false or empty model text never ships)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localstack import LocalTriton, free_port
from streams.kafka_io import Publisher, create_topics
from streams.settings import KafkaSettings, TopicNames
from training.export import export_model
from training.train import TrainConfig, train

from .conftest import KafkaEndpoint
from .streaming import Worker, read_windows, topic_env
from .test_model import TINY, _examples

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOUR = 3_600_000
START = 1_700_000_000_000 // HOUR * HOUR


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deploy")
    first, second = root / "v1", root / "v2"
    train(TINY, TrainConfig(steps=1, batch_size=4, per_window=8), _examples(), first)
    train(TINY, TrainConfig(steps=3, batch_size=4, per_window=8, seed=5), _examples(), second)
    return first, second


def _prepare(kafka: KafkaEndpoint, prefix: str, **extra: str) -> dict[str, str]:
    env = kafka.env(**topic_env(prefix), TRAIL_WINDOW="1h", TRAIL_CANDIDATES="6", TRAIL_TOP_K="3", **extra)
    create_topics(KafkaSettings(kafka.bootstrap_servers),
                  TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq"),
                  partitions=1)
    return env


def _publish_hours(kafka: KafkaEndpoint, topic: str, hours: range) -> None:
    """Eight items with a few events in each hour of ``hours``, then one event in the next hour (which closes the
    last of them: windows close on event time)."""
    events = [{"item_id": f"d{item}", "ts": (START + hour * HOUR) / 1000 + n + item * 10, "user_id": f"u{n}"}
              for hour in hours for item in range(8) for n in range(1 + (item * (hour + 1)) % 5)]
    events.append({"item_id": "d0", "ts": (START + hours.stop * HOUR) / 1000, "user_id": "u0"})
    with Publisher(KafkaSettings(kafka.bootstrap_servers)) as publisher:
        for event in events:
            publisher.send(topic, event["item_id"], json.dumps(event).encode())
        publisher.flush()


def test_a_version_exported_mid_stream_serves_the_next_windows(kafka: KafkaEndpoint, checkpoints, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    export_model(checkpoints[0], repository, model_name="tiny", verify_texts=1)
    env = _prepare(kafka, "hotswap", TRAIL_BACKEND="onnx", TRAIL_MODEL_REPOSITORY=str(repository),
                   TRAIL_MODEL_NAME="tiny")
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        _publish_hours(kafka, "hotswap-interactions", range(0, 3))
        before = read_windows(kafka.bootstrap_servers, "hotswap-trending", 3, timeout_s=120, workers=(worker,))
        export_model(checkpoints[1], repository, model_name="tiny", verify_texts=1)  # while the worker runs
        _publish_hours(kafka, "hotswap-interactions", range(3, 6))
        windows = read_windows(kafka.bootstrap_servers, "hotswap-trending", 6, timeout_s=120, workers=(worker,))
    finally:
        worker.stop()
    versions = [windows[i]["scorer"]["version"] for i in sorted(windows)]
    assert [before[i]["scorer"]["version"] for i in sorted(before)] == ["1", "1", "1"]
    assert versions[:3] == ["1", "1", "1"] and versions[3:] == ["2", "2", "2"]
    for record in windows.values():
        assert record["scorer"] == {**record["scorer"], "name": "tiny", "backend": "onnx", "fallback": False}
        for item in record["items"]:
            assert item["explanation_source"] in ("model", "model-constrained", "composer-fallback")
            assert item["faithfulness"]["all_verified"] is True


def test_triton_down_mid_stream_falls_back_and_recovers(kafka: KafkaEndpoint, checkpoints, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    export_model(checkpoints[0], repository, model_name="tiny", verify_texts=1)
    server = LocalTriton(model_repository=repository, work_dir=tmp_path / "triton", http_port=free_port(),
                         grpc_port=free_port(), metrics_port=free_port(), load_models=("tiny",))
    server.start()
    env = _prepare(kafka, "tritonfail", TRAIL_BACKEND=f"triton://127.0.0.1:{server.grpc_port}",
                   TRAIL_MODEL_REPOSITORY=str(tmp_path / "empty"), TRAIL_MODEL_NAME="tiny")
    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        _publish_hours(kafka, "tritonfail-interactions", range(0, 2))
        served = read_windows(kafka.bootstrap_servers, "tritonfail-trending", 2, timeout_s=120, workers=(worker,))
        server.kill()
        _publish_hours(kafka, "tritonfail-interactions", range(2, 4))
        down = read_windows(kafka.bootstrap_servers, "tritonfail-trending", 4, timeout_s=180, workers=(worker,))
        server.start()
        _publish_hours(kafka, "tritonfail-interactions", range(4, 6))
        back = read_windows(kafka.bootstrap_servers, "tritonfail-trending", 6, timeout_s=180, workers=(worker,))
    finally:
        worker.stop()
        server.stop()
    assert all(served[i]["scorer"]["backend"] == "triton" and not served[i]["scorer"]["fallback"] for i in served)
    outage = [down[i] for i in sorted(down)][2:]
    assert all(r["scorer"]["fallback"] and r["scorer"]["backend"] == "baseline" for r in outage)
    assert all(r["stats"]["events_counted"] > 0 for r in outage)  # ingestion went on
    recovered = [back[i] for i in sorted(back)][4:]
    assert all(r["scorer"]["backend"] == "triton" and not r["scorer"]["fallback"] for r in recovered)
    assert [r["scorer"]["version"] for r in recovered] == ["1", "1"]
