"""Shared fixtures: a real Kafka broker and a real Triton server, started once per test session.

Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the Kafka tests against an existing cluster instead of a local broker.
Each session starts its services in fresh temporary folders on free ports, so nothing from an earlier run
(topics, offsets, models) can leak into this one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localstack import LocalKafka, LocalTriton, free_port
from localstack.process import STOP_GRACE_S

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


# -- no leaked processes ---------------------------------------------------------------------------------------
# Everything the suite starts (brokers, workers, Triton, `trail run`, replays) inherits this marker in its
# environment, also what runs in a session of its own or was re-parented after its parent died; at the end of the
# session none of it may still run.
SESSION_MARKER = f"TRAIL_TEST_SESSION={os.getpid()}-{time.time_ns()}"
os.environ["TRAIL_TEST_SESSION"] = SESSION_MARKER.split("=", 1)[1]


def _stop_like_ctrl_c(*_: object) -> None:
    """SIGTERM to pytest (a CI timeout, a `kill`) unwinds like Ctrl-C: fixtures tear down, the leak check runs."""
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop_like_ctrl_c)


def processes_with(marker: str) -> dict[int, str]:
    """Live (not zombie) processes other than this one whose environment contains ``marker``: pid → command."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker.encode() in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found[int(proc.name)] = command[:160]
        except (OSError, IndexError):
            continue
    return found


def kill_processes_with(marker: str, grace_s: float = STOP_GRACE_S) -> dict[int, str]:
    """SIGTERM every process carrying ``marker``, SIGKILL what is left after ``grace_s``; returns what was found."""
    found = processes_with(marker)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_with(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any process the suite started outlived it (after giving stops in progress a moment)."""
    deadline = time.monotonic() + 5
    while processes_with(SESSION_MARKER) and time.monotonic() < deadline:
        time.sleep(0.2)
    leaked = kill_processes_with(SESSION_MARKER)
    if leaked:
        lines = "\n".join(f"  {pid}: {command}" for pid, command in sorted(leaked.items()))
        session.config.get_terminal_writer().line(f"\nLEAKED PROCESSES (now killed):\n{lines}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
