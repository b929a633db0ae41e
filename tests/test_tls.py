"""Kafka over TLS: a local broker with an SSL listener and a self-signed certificate; the CLI (topics, produce,
tail) and the Faust worker reach it through the same ``KAFKA_SECURITY_PROTOCOL`` / ``KAFKA_SSL_CAFILE`` settings,
and a client that does not trust the certificate is refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from localstack import LocalKafka, free_port
from trail.windows import WindowSpec, parse_duration

from .conftest import run_trail
from .streaming import Worker, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOUR_S = 3600
START_S = 1_700_000_000 // HOUR_S * HOUR_S


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for CN=localhost, valid for 127.0.0.1, made by openssl."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed_certificate(folder)
    keystore = folder / "keystore.pem"  # Kafka's PEM keystore: the private key, then the certificate chain
    keystore.write_text(key.read_text() + cert.read_text())
    ssl_port = free_port()
    broker = LocalKafka(data_dir=folder / "kafka", port=free_port(), controller_port=free_port(),
                        extra_listeners={"SSL": ("SSL", ssl_port)},
                        extra_properties={"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)})
    broker.start()
    try:
        yield f"127.0.0.1:{ssl_port}", cert
    finally:
        broker.stop()


def test_cli_and_worker_use_the_tls_listener(tls_broker, tmp_path: Path) -> None:
    bootstrap, cert = tls_broker
    env = {**topic_env("tls"), "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
           "KAFKA_SSL_CAFILE": str(cert), "TRAIL_WINDOW": "1h", "TRAIL_CANDIDATES": "5", "TRAIL_TOP_K": "3",
           "TRAIL_LOG_FORMAT": "json"}
    import os

    env = {**os.environ, **env}
    created = run_trail("topics", "create", "--partitions", "1", env=env)
    assert created.returncode == 0, created.stderr.decode()
    events = "\n".join(json.dumps({"item_id": f"t{item}", "ts": START_S + hour * HOUR_S + n, "user_id": f"u{n}"})
                       for hour in range(3) for item in range(4) for n in range(1 + item + hour))
    produced = run_trail("produce", env=env, input=events.encode())
    assert produced.returncode == 0, produced.stderr.decode()
    assert b"published 42 event(s)" in produced.stderr

    worker = Worker(env, tmp_path / "state", tmp_path / "worker.log").start()
    try:
        tail = run_trail("tail", "trending", "--raw", "--max", "2", "--idle-timeout", "120", env=env, timeout=180)
    finally:
        worker.stop()
    assert tail.returncode == 0, tail.stderr.decode() + worker.log_tail()
    windows = [json.loads(line) for line in tail.stdout.decode().splitlines()]
    first = WindowSpec(parse_duration("1h")).index_of(START_S * 1000)
    assert [w["window"]["index"] for w in windows] == [first, first + 1]
    # hour 0: item t3 had 4 events, the most; hour 1: t3 had 5
    assert [w["items"][0]["item_id"] for w in windows] == ["t3", "t3"]
    assert [w["stats"]["events_counted"] for w in windows] == [10, 14]
    # TRAIL_LOG_FORMAT=json: the worker's log lines are JSON objects, the window closes among them
    logged = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    assert any("closed window" in entry["message"] for entry in logged)
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in logged)


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_broker) -> None:
    import os

    bootstrap, _ = tls_broker
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
           "KAFKA_BOOTSTRAP_TIMEOUT_MS": "5000"}
    result = run_trail("topics", "create", env=env, timeout=60)
    assert result.returncode == 1
    message = result.stderr.decode().strip()
    assert len(message.splitlines()) == 1 and "trail topics: error:" in message, message
