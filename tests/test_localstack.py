"""The local Kafka launcher: start, serve, stop; failures explain themselves; nothing stale is reused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from localstack import KafkaStartError, LocalKafka, free_port
from localstack.process import alive

pytestmark = pytest.mark.kafka


def test_broker_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "k", port=free_port(), controller_port=free_port())
    started = time.monotonic()
    broker.start()
    print(f"broker ready in {time.monotonic() - started:.1f} s")
    pid = int(broker.pid_path.read_text())
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        cluster = admin.describe_cluster()
        assert cluster["brokers"][0]["host"] == "127.0.0.1"
    finally:
        admin.close()
    assert broker.stop() is True  # exited on SIGTERM, no SIGKILL needed
    assert not alive(pid)
    assert "shutting down" in broker.log_tail(400)
    assert not broker.pid_path.exists()


def test_a_fresh_data_dir_has_no_topics_from_earlier_runs(tmp_path: Path, kafka) -> None:  # noqa: ANN001
    broker = LocalKafka(data_dir=tmp_path / "fresh", port=free_port(), controller_port=free_port())
    with broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            assert [t for t in admin.list_topics() if not t.startswith("__")] == []
        finally:
            admin.close()


def test_a_crashing_broker_reports_the_tail_of_its_log(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "bad", port=free_port(), controller_port=free_port())
    broker.start()
    broker.stop()
    meta = tmp_path / "bad" / "logs" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"))  # a log dir that belongs to another node
    with pytest.raises(KafkaStartError) as info:
        broker.start(timeout_s=60)
    message = str(info.value)
    print(message)
    assert "exited with code" in message and "last lines of" in message
    assert "Stored node id 7 doesn't match" in message
    assert not broker.is_running()


def test_a_taken_port_is_refused_in_one_sentence(tmp_path: Path, kafka) -> None:  # noqa: ANN001
    if kafka.broker is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS points at an external cluster; no local port to collide with")
    broker = LocalKafka(data_dir=tmp_path / "dup", port=kafka.broker.port, controller_port=free_port())
    with pytest.raises(KafkaStartError, match=rf"port {kafka.broker.port} on 127.0.0.1 is already in use"):
        broker.start()
