"""A real single-node Apache Kafka 4 broker (KRaft: broker and controller in one JVM) on 127.0.0.1.

Used by ``make kafka-up`` / ``make kafka-down``, by ``make run`` and by the tests' session fixture. The jars come
from Maven Central (``make kafka-jars`` → ``.kafka/libs``); nothing else is downloaded. The broker listens on
loopback only and keeps its data in a folder of the caller's choosing.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from localstack.process import STOP_GRACE_S, alive, pid_from, port_in_use, terminate

from trail.errors import TrailError

__all__ = ["KafkaStartError", "LocalKafka", "LocalKafkaCluster"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIBS = PROJECT_ROOT / ".kafka" / "libs"

_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def new_cluster_id() -> str:
    cluster = "-"
    while cluster.startswith("-"):  # an id starting with "-" would be read as an option by kafka-storage
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster


class KafkaStartError(TrailError, RuntimeError):
    """The broker could not be started; the message carries the reason and the tail of the broker's log."""


@dataclass
class LocalKafka:
    """One broker process. ``start()`` waits until it answers metadata requests; ``stop()`` shuts it down cleanly.

    Extra broker settings (e.g. an SSL listener) go in ``extra_properties``; ``extra_listeners`` maps listener
    names to ``PROTOCOL`` and port, for tests of secured connections.
    """

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    libs_dir: Path = DEFAULT_LIBS
    heap: str = "512m"
    extra_listeners: dict[str, tuple[str, int]] = field(default_factory=dict)
    extra_properties: dict[str, str] = field(default_factory=dict)
    node_id: int = 1
    voters: str | None = None  # a cluster's controller quorum ("1@host:port,2@..."); None: this node alone
    cluster_id: str | None = None  # shared by a cluster's nodes; None: a fresh one when formatting
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    def start(self, timeout_s: float = 60.0) -> "LocalKafka":
        self.launch()
        self._wait_ready(timeout_s)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to serve (a cluster's nodes need each other to get ready)."""
        self._check_prerequisites()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(config)
        log = open(self.log_path, "wb")  # one log per start, so an error shows this start only
        self._process = subprocess.Popen(
            [self._java(), f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
             "-cp", f"{self.libs_dir}/*", "kafka.Kafka", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker: we stop it cleanly
        )
        log.close()
        self.pid_path.write_text(str(self._process.pid))

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        self._wait_ready(timeout_s)

    def stop(self, timeout_s: float = STOP_GRACE_S) -> bool:
        """SIGTERM (Kafka's controlled shutdown), then SIGKILL if it has not exited within ``timeout_s``.
        Returns True when the broker shut down by itself."""
        pid = self._process.pid if self._process else pid_from(self.pid_path)
        if pid is None:
            return True
        clean = terminate(pid, self._process, timeout_s)
        self._process = None
        self.pid_path.unlink(missing_ok=True)
        return clean

    def kill(self) -> None:
        """SIGKILL without shutdown: for crash tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            self.pid_path.unlink(missing_ok=True)

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        pid = pid_from(self.pid_path)
        return pid is not None and alive(pid)

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"

    def _check_prerequisites(self) -> None:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise KafkaStartError("Java 17+ is required to run the local Kafka broker, and `java` is not on PATH")
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise KafkaStartError(f"Kafka jars are missing from {self.libs_dir}: run `make kafka-jars` first")
        for port in (self.port, self.controller_port, *(p for _, p in self.extra_listeners.values())):
            if port_in_use(port):
                raise KafkaStartError(f"port {port} on 127.0.0.1 is already in use (another broker running?)")

    def _java(self) -> str:
        home = os.environ.get("JAVA_HOME")
        return str(Path(home) / "bin" / "java") if home else "java"

    def _write_config(self) -> Path:
        listeners = {"PLAINTEXT": ("PLAINTEXT", self.port), **self.extra_listeners}
        listener_urls = ",".join(f"{name}://127.0.0.1:{port}" for name, (_, port) in listeners.items())
        protocol_map = ",".join(f"{name}:{proto}" for name, (proto, _) in listeners.items())
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "listeners": f"{listener_urls},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listener_urls,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": f"{protocol_map},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "-1",  # replays carry old event times; never expire them by age
            **self.extra_properties,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        (self.data_dir / "log4j2.yaml").write_text(_LOG4J2)
        return path

    def _format(self, config: Path) -> None:
        cluster = self.cluster_id or new_cluster_id()
        standalone = [] if self.voters else ["--standalone"]  # a static quorum is named in the config
        result = subprocess.run(
            [self._java(), "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool", "format",
             "-t", cluster, "-c", str(config), *standalone],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise KafkaStartError(f"formatting {self.data_dir} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise KafkaStartError(
                    f"the Kafka broker exited with code {self._process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._answers_metadata():
                return
            time.sleep(0.2)
        self.stop(timeout_s=5)
        raise KafkaStartError(f"the Kafka broker was not ready within {timeout_s:.0f} s; log tail:\n{self.log_tail()}")

    def _answers_metadata(self) -> bool:
        if not port_in_use(self.port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000, bootstrap_timeout_ms=3000,
                                     client_id="trail-readiness")
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return "Kafka Server started" in self.log_path.read_text(errors="replace")
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


@dataclass
class LocalKafkaCluster:
    """``size`` KRaft nodes on loopback, each a combined controller and broker JVM with a small heap, forming one
    controller quorum: internal topics replicated ``size`` times, ``min.insync.replicas`` = 2 by default. For the
    tests of durability under broker failures; ``make run`` stays on one broker."""

    data_dir: Path
    size: int = 3
    heap: str = "384m"
    min_insync_replicas: int = 2
    nodes: list[LocalKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        from localstack.process import free_port

        ports = [(free_port(), free_port()) for _ in range(self.size)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{controller}" for n, (_, controller) in enumerate(ports))
        cluster_id = new_cluster_id()
        replicas = str(min(3, self.size))
        min_isr = str(min(self.min_insync_replicas, self.size))
        for n, (port, controller) in enumerate(ports):
            self.nodes.append(LocalKafka(
                data_dir=self.data_dir / f"node{n + 1}", port=port, controller_port=controller, heap=self.heap,
                node_id=n + 1, voters=voters, cluster_id=cluster_id,
                extra_properties={"offsets.topic.replication.factor": replicas,
                                  "transaction.state.log.replication.factor": replicas,
                                  "transaction.state.log.min.isr": min_isr,
                                  "default.replication.factor": replicas,
                                  "min.insync.replicas": min_isr}))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def start(self, timeout_s: float = 120.0) -> "LocalKafkaCluster":
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "LocalKafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
