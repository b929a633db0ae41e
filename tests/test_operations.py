"""Operations pieces without a broker: the settings file, JSON logs, the events/s gauge, the Prometheus text, and
`trail run` refusing to start (port taken, no Java) in one line."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from serving.backend import ModelInfo
from streams.config import WorkerConfig
from streams.logs import JsonFormatter
from streams.metrics import Metrics
from streams.settings import KafkaSettings, TopicNames

from .conftest import run_trail


def test_a_config_file_fills_in_what_the_environment_does_not_set(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "trail.toml"
    config.write_text('TRAIL_WINDOW = "1d"\nTRAIL_TOP_K = 5\nKAFKA_BOOTSTRAP_SERVERS = "broker:9093"\n'
                      'TRAIL_TOPIC_TRENDING = "hot"\nTRAIL_LIVE = true\n')
    monkeypatch.setenv("TRAIL_CONFIG", str(config))
    monkeypatch.setenv("TRAIL_TOP_K", "7")  # the environment wins
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    worker = WorkerConfig.from_env()
    assert worker.window.size_ms == 86_400_000 and worker.top_k == 7 and worker.close_on_wall_clock
    assert KafkaSettings.from_env().bootstrap_servers == "broker:9093"
    assert TopicNames.from_env().trending == "hot"


def test_a_bad_config_file_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("TRAIL_WINDOW = \n")
    monkeypatch.setenv("TRAIL_CONFIG", str(config))
    with pytest.raises(ValueError, match="not valid TOML"):
        WorkerConfig.from_env()
    monkeypatch.setenv("TRAIL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="no such file"):
        WorkerConfig.from_env()
    monkeypatch.setenv("TRAIL_CONFIG", "")
    monkeypatch.setenv("TRAIL_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="TRAIL_LOG_FORMAT must be text or json"):
        WorkerConfig.from_env()


def test_json_log_lines() -> None:
    record = logging.LogRecord("trail.worker", logging.WARNING, __file__, 1, "closed %d items", (3,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "trail.worker" and entry["message"] == "closed 3 items"
    assert entry["ts"].endswith("+00:00")


def test_events_per_second_over_the_last_samples() -> None:
    metrics = Metrics()
    assert metrics.events_per_second == 0.0
    for second in range(30):
        metrics.events += 100 if second < 20 else 400
        metrics.sample(now=float(second))
    # the last 10 s of samples: 400 events per second
    assert metrics.events_per_second == pytest.approx(400.0)
    text = metrics.prometheus(ModelInfo("trail", "3", "onnx"))
    assert "trail_events_per_second 400.000" in text
    assert 'trail_model_info{name="trail",version="3",backend="onnx"} 1' in text
    assert "trail_events_total 6000" in text  # 20 s x 100 + 10 s x 400


def test_make_run_says_in_one_line_that_the_page_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_trail("run", "--web-port", str(port), timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"trail run: error: port {port} on 127.0.0.1 is taken (another worker or `make run`?): free it or choose "
        "another with WEB_PORT=...")
    assert result.stdout == b""


def test_make_run_says_in_one_line_that_java_is_missing(tmp_path: Path) -> None:
    python_only = tmp_path / "bin"
    python_only.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "JAVA_HOME"}
    env["PATH"] = str(python_only)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    env["TRAIL_KAFKA_PORT"] = str(free)
    env["TRAIL_KAFKA_DATA_DIR"] = str(tmp_path / "kafka")  # not a broker this checkout may have running
    result = run_trail("run", "--web-port", str(free), env=env, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines == ["trail run: error: Java 17+ is required to run the local Kafka broker, and `java` is not on PATH"]
