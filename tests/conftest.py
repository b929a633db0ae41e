"""Shared fixtures: a real Kafka broker and a real Triton server, started once per test session.

Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the Kafka tests against an existing cluster instead of a local broker.
Each session starts its services in fresh temporary folders on free ports, so nothing from an earlier run
(topics, offsets, models) can leak into this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localstack import LocalKafka, LocalTriton, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("TRAIL_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
SHIPPED = PROJECT_ROOT / "models" / "online-retail"


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str
    broker: LocalKafka | None  # None when the tests use an existing cluster

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``trail`` subprocess talking to this broker."""
        return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, **extra}


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaEndpoint]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield KafkaEndpoint(existing, None)
        return
    broker = LocalKafka(data_dir=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield KafkaEndpoint(broker.bootstrap_servers, broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("triton_models")


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, triton_repository: Path) -> Iterator[LocalTriton]:
    server = LocalTriton(model_repository=triton_repository, work_dir=tmp_path_factory.mktemp("triton"),
                         http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory: pytest.TempPathFactory):
    """The shipped adapter on SmolLM2, exported once per session as ``trail`` version 1 (int8 scoring graph, as
    verified by the export itself): what `make export-onnx EXPORT_ARGS=--quantize` publishes."""
    from training.export import export_model

    return export_model(SHIPPED, tmp_path_factory.mktemp("shipped") / "repo", model_name="trail", verify_texts=2,
                        quantize=True)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not (DATASETS / "online_retail" / "online_retail.csv.gz").exists():
        pytest.fail(f"the shared datasets are missing at {DATASETS} (set TRAIL_DATASETS)")
    return DATASETS


def run_trail(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``trail`` console entry point as a user would."""
    return subprocess.run([sys.executable, "-m", "trail_cli", *args], cwd=PROJECT_ROOT, env=env or dict(os.environ),
                          input=input, capture_output=True, timeout=timeout)
