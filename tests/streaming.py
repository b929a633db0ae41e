"""Helpers for tests that run real Faust workers against the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localstack import free_port
from localstack.process import STOP_GRACE_S
from streams.kafka_io import read_topic
from streams.settings import KafkaSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def topic_env(prefix: str) -> dict[str, str]:
    return {"TRAIL_TOPIC_INTERACTIONS": f"{prefix}-interactions", "TRAIL_TOPIC_ITEMS": f"{prefix}-items",
            "TRAIL_TOPIC_TRENDING": f"{prefix}-trending", "TRAIL_TOPIC_DLQ": f"{prefix}-dlq",
            "TRAIL_APP_ID": f"{prefix}-app"}


@dataclass
class Worker:
    """One ``trail worker`` process (the real Faust worker), its log in ``log_path``."""

    env: dict[str, str]
    data_dir: Path
    log_path: Path
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90) -> "Worker":
        env = {**self.env, "TRAIL_DATA_DIR": str(self.data_dir), "TRAIL_WEB_PORT": str(self.web_port)}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "trail_cli", "worker", "--loglevel", "info"],
                                        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.health() is not None:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"worker not healthy within {timeout_s} s:\n{self.log_tail()}")

    def health(self) -> dict[str, Any] | None:
        return self.get("/health")

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2) as response:
                body = response.read()
                return json.loads(body) if response.headers.get_content_type() == "application/json" else body.decode()
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = STOP_GRACE_S) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def read_windows(bootstrap: str, topic: str, expected: int, timeout_s: float = 180,
                 workers: tuple[Worker, ...] = ()) -> dict[int, dict[str, Any]]:
    """Trending records by window index (a duplicate published after a crash must be identical), waiting until
    ``expected`` distinct windows arrived."""
    deadline = time.monotonic() + timeout_s
    windows: dict[int, dict[str, Any]] = {}
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    while time.monotonic() < deadline and len(windows) < expected:
        for record in read_topic(settings, topic, idle_timeout_s=2):
            value = json.loads(record.value)
            index = value["window"]["index"]
            if index in windows:
                assert _comparable(windows[index]) == _comparable(value), f"window {index} published twice, differently"
            windows[index] = value
        for worker in workers:
            if worker.process is not None and worker.process.poll() is not None:
                raise RuntimeError(f"a worker died:\n{worker.log_tail()}")
    if len(windows) < expected:
        details = "\n".join(w.log_tail(30) for w in workers)
        raise AssertionError(f"only {len(windows)} of {expected} windows published in {timeout_s} s\n{details}")
    return windows


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timing fields."""
    stats = {k: v for k, v in record["stats"].items() if k not in ("latency_ms", "merge_ms")}
    return {**record, "generated_at": None, "stats": stats}


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    return _comparable(record)
