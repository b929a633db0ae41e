"""``trail run`` (``make run``): the whole product on one machine, started and stopped as one thing.

A local Kafka broker, the model (the shipped adapter exported on first use), a Faust worker scoring with the
embedded ONNX Runtime (or a local Triton server), and a replay of a dataset at an accelerated speed; the trending
lists are printed as they are published and shown live on the worker's web page. Everything started here is
stopped here (Ctrl-C or SIGTERM), in reverse order; services that were already running are left running.

State outlives a run: the broker's data (``.kafka/data``), the worker's tables (``.trail-data/run``) and the model
versions. A second run continues: the worker recovers its windows, the replay skips what the topic already holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

from serving.triton_repository import latest_version
from streams.kafka_io import create_topics, read_topic
from streams.settings import KafkaSettings, TopicNames
from trail.errors import ConfigError, TrailError
from trail.trending_record import TrendingRecord

from .kafka import PROJECT_ROOT, LocalKafka
from .process import STOP_GRACE_S, port_in_use, terminate
from .triton import LocalTriton

__all__ = ["LocalRun", "RunError", "RunOptions", "format_record"]


class RunError(TrailError, RuntimeError):
    """Something ``trail run`` cannot work around (a port taken, a process that died): one line for the user."""


@dataclass(frozen=True)
class RunOptions:
    dataset: str = "online-retail"
    dataset_path: Path | None = None
    speed: float = 10_080.0  # event time runs this much faster than the wall clock: a week a minute
    limit: int | None = None  # interactions replayed at most (all by default)
    backend: str = "onnx"  # onnx | triton | baseline
    checkpoint: Path = PROJECT_ROOT / "models" / "online-retail"
    model_repository: Path = PROJECT_ROOT / "triton_models"
    model_name: str = "trail"
    window: str = "7d"
    candidates: int = 40  # items the model scores per window (bounds the model's cost per window)
    top_k: int = 10  # items published and explained per window
    partitions: int = 3
    web_port: int = 6066
    state_dir: Path = PROJECT_ROOT / ".trail-data" / "run"
    max_windows: int | None = None  # stop by itself after this many newly published windows (tests, demos)

    def __post_init__(self) -> None:
        if self.backend not in ("onnx", "triton", "baseline"):
            raise ConfigError(f"--backend must be onnx, triton or baseline, got {self.backend!r}")


@dataclass
class LocalRun:
    options: RunOptions
    kafka: LocalKafka
    triton: LocalTriton | None = None
    out: TextIO = sys.stdout
    _started: list[tuple[str, Callable[[], None]]] = field(default_factory=list)  # what stop() undoes, in order
    _worker: subprocess.Popen[bytes] | None = None
    _replay: subprocess.Popen[bytes] | None = None
    published: int = 0

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.options.web_port}/"

    def start(self) -> None:
        """Everything up to a healthy worker and a running replay; on failure, what was started is stopped."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        options = self.options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        if port_in_use(options.web_port):
            raise RunError(f"port {options.web_port} on 127.0.0.1 is taken (another worker or `make run`?): "
                           "free it or choose another with WEB_PORT=...")
        self.say(f"Kafka: {self._ensure_kafka()}")
        topics = TopicNames.from_env()
        create_topics(self._kafka_settings, topics, partitions=options.partitions)
        if options.backend != "baseline":
            self._ensure_model()
        if options.backend == "triton":
            self.say(f"Triton: {self._ensure_triton()}")
        self._start_worker()
        self.say(f"worker: healthy, scoring with {options.backend}; log {self._log('worker')}")
        self._start_replay()
        self.say(f"replay: {options.dataset} at {options.speed:g}x event time; log {self._log('replay')}")
        self.say(f"\nTrending page: {self.page_url}   (JSON: {self.page_url}trending)   Ctrl-C stops everything\n")

    @property
    def _kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers)

    def _ensure_kafka(self) -> str:
        if self.kafka.is_running():
            return f"reusing the running broker at {self.kafka.bootstrap_servers}"
        began = time.monotonic()
        self.kafka.start()
        self._started.append(("Kafka", self.kafka.stop))
        return f"started at {self.kafka.bootstrap_servers} in {time.monotonic() - began:.1f} s"

    def _ensure_model(self) -> None:
        folder = self.options.model_repository / self.options.model_name
        version = latest_version(folder)
        if version is not None:
            self.say(f"model: {folder} version {version}")
            return
        self.say(f"model: no version in {folder}: exporting {self.options.checkpoint} (first run only, a few "
                  f"minutes; log {self._log('export')})")
        began = time.monotonic()
        with open(self._log("export"), "wb") as log:
            code = subprocess.call(
                [sys.executable, "-m", "trail_cli", "export", str(self.options.checkpoint),
                 "--repository", str(self.options.model_repository), "--model-name", self.options.model_name],
                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise RunError(f"the model export failed (exit {code}): see {self._log('export')}")
        self.say(f"model: exported version {latest_version(folder)} in {time.monotonic() - began:.0f} s")

    def _ensure_triton(self) -> str:
        assert self.triton is not None
        if self.triton.is_ready():
            self.triton.load_model(self.options.model_name)
            return f"reusing the running server at {self.triton.grpc_url}"
        began = time.monotonic()
        # the model may have been exported a moment ago: name it, rather than what the repository held earlier
        self.triton = replace(self.triton, model_repository=self.options.model_repository,
                              load_models=(self.options.model_name,))
        self.triton.start()
        self._started.append(("Triton", self.triton.stop))
        return f"started at {self.triton.grpc_url} in {time.monotonic() - began:.1f} s"

    def _worker_env(self) -> dict[str, str]:
        options = self.options
        backend = {"onnx": "onnx", "baseline": "baseline",
                   "triton": f"triton://{self.triton.grpc_url}" if self.triton else ""}[options.backend]
        return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers, "TRAIL_BACKEND": backend,
                "TRAIL_WEB_PORT": str(options.web_port), "TRAIL_DATA_DIR": str(options.state_dir / "worker"),
                "TRAIL_WINDOW": options.window, "TRAIL_CANDIDATES": str(options.candidates),
                "TRAIL_TOP_K": str(options.top_k), "TRAIL_MODEL_REPOSITORY": str(options.model_repository),
                "TRAIL_MODEL_NAME": options.model_name}

    def _start_worker(self, timeout_s: float = 180.0) -> None:
        self._worker = self._spawn("worker", ["worker", "--loglevel", "info"], self._worker_env())
        self._started.append(("worker", lambda: self._stop_process(self._worker, STOP_GRACE_S)))
        deadline = time.monotonic() + timeout_s
        while not (self._get("health") or {}).get("ready"):  # ready: tables recovered, partitions assigned
            if self._worker.poll() is not None:
                raise self._worker_exited()
            if time.monotonic() > deadline:
                raise RunError(f"the worker was not healthy within {timeout_s:.0f} s: see {self._log('worker')}")
            time.sleep(0.5)

    def _start_replay(self) -> None:
        options = self.options
        args = ["replay", options.dataset, "--speed", f"{options.speed:g}", "--resume", "--no-progress"]
        if options.dataset_path is not None:
            args += ["--path", str(options.dataset_path)]
        if options.limit is not None:
            args += ["--limit", str(options.limit)]
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers}
        self._replay = self._spawn("replay", args, env)
        self._started.append(("replay", lambda: self._stop_process(self._replay, STOP_GRACE_S)))

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self._log(name), "ab") as log:
            # its own session: Ctrl-C reaches this process only, which then stops the children in order
            return subprocess.Popen([sys.executable, "-m", "trail_cli", *args], cwd=PROJECT_ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def follow(self) -> int:
        """Print the last published list, then every new one, until ``max_windows`` new lists (or Ctrl-C).
        Returns the number of lists printed."""
        last = self._get("trending")
        if last and last.get("window") is not None:
            try:
                earlier = TrendingRecord.from_dict(last)
            except (KeyError, TypeError):  # written by an older worker, in an older record format
                earlier = None
            if earlier is not None:
                self.say("last published list (from an earlier run):")
                self.say(format_record(earlier))
        for record in read_topic(self._kafka_settings, TopicNames.from_env().trending, from_beginning=False,
                                 stop=self._should_stop_following):
            self.say(format_record(TrendingRecord.from_dict(json.loads(record.value))))
            self.published += 1
        return self.published

    def _should_stop_following(self) -> bool:
        if self.options.max_windows is not None and self.published >= self.options.max_windows:
            return True
        if self._worker is not None and self._worker.poll() is not None:
            raise self._worker_exited()
        return False

    def stop(self) -> list[str]:
        """Stop what this run started, newest first (replay, worker, Triton, Kafka). Returns their names."""
        stopped = []
        while self._started:
            name, stop = self._started.pop()
            stop()
            stopped.append(name)
        return stopped

    @staticmethod
    def _stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
        if process is not None and process.poll() is None:
            terminate(process.pid, process, timeout_s)

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"{self.page_url}{path}", timeout=2) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def _log(self, name: str) -> Path:
        return self.options.state_dir / f"{name}.log"

    def _worker_exited(self, lines: int = 30) -> RunError:
        """The worker's exit status with the end of its log: the reason is usually in its last lines."""
        assert self._worker is not None
        try:
            tail = self._log("worker").read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            tail = ["(no worker log)"]
        return RunError(f"the worker exited with {self._worker.returncode}; last lines of {self._log('worker')}:\n"
                        + "\n".join(tail))

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def format_record(record: TrendingRecord, width: int = 120) -> str:
    """One published window as a few terminal lines: header, then rank, title, prediction, badge, explanation."""
    window, scorer, stats = record.window, record.scorer, record.stats
    fallback = "  FALLBACK" if scorer.fallback else ""
    lines = [f"── window #{window.index}  {window.start[:10]} → {window.end[:10]}   "
             f"{scorer.name} v{scorer.version} ({scorer.backend}){fallback}   "
             f"{stats.events_counted:,.0f} events, {stats.items_tracked:,} items tracked"]
    for item in record.items:
        check = item.faithfulness
        badge = f"{'✓' if check.all_verified else '!'}{check.verified}/{check.claims}"
        title = (item.title or item.item_id)[:34]
        head = f"{item.rank:>3}  {title:<34} pred {item.predicted_count:>7.1f}  {badge:<6} "
        lines.append(head + item.explanation[: max(20, width - len(head))])
    return "\n".join(lines)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_until_stopped(run: LocalRun) -> int:
    """Start, follow, and on Ctrl-C / SIGTERM / ``max_windows`` stop everything started. Exit code 0 or 1."""
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    try:
        run.start()
        run.follow()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        stopped = run.stop()
        if stopped:
            run.say(f"\nstopped {', '.join(stopped)} after {time.monotonic() - began:.0f} s; "
                     f"{run.published} list(s) shown. State kept: the next `make run` continues.")
    return 0
