"""What ``make run`` runs (``trail run``), non-interactively: its own Kafka broker, the shipped model on the embedded
ONNX Runtime, a worker, Online Retail replayed fast. Checks: a trending record for every closed window, with
event counts equal to the dataset's; every published explanation verified; the live page (headless Chromium)
renders the last published record (screenshot in test-artifacts/); nothing left running after the stop; a second
start continues from the same state (no re-export, replay resumed, no window counted twice or lost)."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pytest

from localstack import LocalKafka, free_port
from localstack.process import port_in_use
from streams.kafka_io import read_topic
from streams.settings import KafkaSettings
from trail.windows import WindowSpec, parse_duration
from training.datasets import open_dataset

from .conftest import ARTIFACTS, PROJECT_ROOT, kill_processes_with

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class RunProcess:
    """One ``trail run`` process with its output captured; stops it like Ctrl-C does."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "trail_cli", "run", *args], cwd=PROJECT_ROOT,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_as_in_a_terminal)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"trail run exited ({self.process.returncode}) before {text!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout_s} s:\n{self.output()}")
            time.sleep(0.5)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                self.process.wait(timeout=90)  # each child it stops gets 15 s before SIGKILL
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            raise AssertionError(f"trail run did not stop by itself in {timeout_s} s:\n{self.output()[-4000:]}")


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches a command started in a terminal. When the tests themselves run as a background job of a
    non-interactive shell (``bash .ci/run &``), SIGINT is ignored and that disposition is inherited, so Python would
    not turn it into KeyboardInterrupt; restore the default the way an interactive shell does for its commands."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _processes_with(marker: str) -> list[str]:
    """Processes whose environment contains ``marker`` (everything a run starts inherits the test's env)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command[:120]}")
        except OSError:
            continue
    return found


class _PageItems(HTMLParser):
    """The rendered list: per ``li.item`` its data attributes and the text of its title/explanation/badge."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self.window: str | None = None
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if tag == "body":
            self.window = values.get("data-window")
        if tag == "li" and "item" in classes:
            self.items.append({"item_id": values.get("data-item-id"), "rank": int(values.get("data-rank") or 0)})
        elif self.items and tag == "svg" and "spark" in classes:
            self.items[-1]["spark"] = [float(v) for v in (values.get("data-points") or "").split(",") if v]
        elif self.items:
            for name in ("title", "text", "badge", "predicted"):
                if name in classes:
                    self._field = name

    def handle_data(self, data: str) -> None:
        if self._field and self.items:
            self.items[-1][self._field] = self.items[-1].get(self._field, "") + data
            self._field = None


def _render_page(url: str, screenshot: Path, profile: Path) -> str:
    """The DOM after the page's script ran, and a screenshot of it, from Debian's headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=6000"]
    subprocess.run([*common, "--window-size=1280,1400", f"--screenshot={screenshot}", url], check=True,
                   capture_output=True, timeout=120)
    return subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, timeout=120).stdout.decode()


def _trending(bootstrap: str, topic: str = "trending-with-explanations") -> dict[int, dict[str, Any]]:
    records = {}
    for record in read_topic(KafkaSettings(bootstrap_servers=bootstrap), topic, idle_timeout_s=3):
        value = json.loads(record.value)
        records.setdefault(value["window"]["index"], []).append(value)
    for index, copies in records.items():  # a window re-published after a restart must say the same thing
        assert len({json.dumps(c["items"], sort_keys=True) for c in copies}) == 1, f"window {index} differs"
    return {index: copies[0] for index, copies in records.items()}


@pytest.fixture(scope="module")
def run_env(tmp_path_factory: pytest.TempPathFactory, shipped_export) -> dict[str, str]:
    root = tmp_path_factory.mktemp("make-run")
    repository = root / "triton_models"
    shutil.copytree(shipped_export.folder.parent, repository / "trail")  # what a first run would export
    return {**os.environ, "TRAIL_KAFKA_PORT": str(free_port()), "TRAIL_KAFKA_CONTROLLER_PORT": str(free_port()),
            "TRAIL_KAFKA_DATA_DIR": str(root / "kafka"), "TRAIL_MODEL_REPOSITORY": str(repository),
            "TRAIL_RUN_MARKER": str(root), "TRAIL_ROOT": str(root)}


@pytest.fixture(autouse=True)
def _stop_what_a_failed_test_left(run_env: dict[str, str]) -> Iterator[None]:
    """A test that fails mid-run (an assertion, a timeout) leaves its `trail run` and children: stop them all."""
    yield
    kill_processes_with(run_env["TRAIL_RUN_MARKER"])


def _args(env: dict[str, str], web_port: int, max_windows: int | None = None) -> list[str]:
    root = Path(env["TRAIL_ROOT"])
    # a week of event time in ~6 s: the windows close faster than in a demo, to keep the test short
    args = ["--speed", "100000", "--candidates", "8", "--top-k", "3", "--web-port", str(web_port),
            "--state-dir", str(root / "state")]
    return args + (["--max-windows", str(max_windows)] if max_windows else [])


def test_make_run_publishes_explained_lists_shows_them_live_and_stops_cleanly(run_env, datasets_dir: Path,
                                                                              tmp_path: Path) -> None:
    web_port = free_port()
    started = time.monotonic()
    run = RunProcess(_args(run_env, web_port, 2), run_env, tmp_path / "run1.log")
    run.wait_for("── window #", timeout_s=300)
    first_list_s = time.monotonic() - started

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "live-page.png"
    dom = _render_page(f"http://127.0.0.1:{web_port}/", screenshot, tmp_path / "chromium")
    page = _PageItems()
    page.feed(dom)
    (ARTIFACTS / "live-page.html").write_text(dom)

    assert run.wait(timeout_s=600) == 0, run.output()
    output = run.output()
    assert "model: " in output and "exporting" not in output  # the repository had a version: no export
    assert re.search(r"stopped replay, worker, Kafka after \d+ s; 2 list\(s\) shown", output), output
    assert not port_in_use(web_port) and not port_in_use(int(run_env["TRAIL_KAFKA_PORT"]))
    assert _processes_with(run_env["TRAIL_RUN_MARKER"]) == []

    # every window up to the last published one, counted exactly like the dataset, explanations all verified
    broker = LocalKafka(data_dir=Path(run_env["TRAIL_KAFKA_DATA_DIR"]), port=int(run_env["TRAIL_KAFKA_PORT"]),
                        controller_port=int(run_env["TRAIL_KAFKA_CONTROLLER_PORT"]))
    with broker:
        windows = _trending(broker.bootstrap_servers)
    assert len(windows) >= 2 and sorted(windows) == list(range(min(windows), max(windows) + 1))
    expected = _dataset_counts(datasets_dir, set(windows))
    assert {i: w["stats"]["events_counted"] for i, w in windows.items()} == expected
    for record in windows.values():
        assert record["scorer"] == {"name": "trail", "version": "1", "backend": "onnx", "fallback": False}
        assert len(record["items"]) == 3
        assert all(item["faithfulness"]["all_verified"] for item in record["items"])
    sources = collections.Counter(item["explanation_source"] for r in windows.values() for item in r["items"])
    model_share = (sources["model"] + sources["model-constrained"]) / sum(sources.values())
    print(f"\nexplanations published by make run: {dict(sources)}; model-written share {model_share:.2f}")

    # the page showed one of them exactly: same items, ranks, titles, explanations, badges and sparklines
    shown = windows[int(page.window)]
    assert [(i["item_id"], i["rank"]) for i in page.items] == [(i["item_id"], i["rank"]) for i in shown["items"]]
    for rendered, item in zip(page.items, shown["items"]):
        assert rendered["title"] == (item["title"] or item["item_id"])
        assert rendered["text"] == item["explanation"]
        check = item["faithfulness"]
        assert rendered["badge"].endswith(f"{check['verified']}/{check['claims']} claims verified")
        assert rendered["spark"] == item["signals"]["history"]
    assert screenshot.stat().st_size > 10_000
    (ARTIFACTS / "make-run-first-list.txt").write_text(f"time to first list: {first_list_s:.1f} s\n"
                                                      f"explanation sources: {dict(sources)}\n{output}")


def test_a_second_start_continues_from_the_same_state_and_ctrl_c_stops_it(run_env, datasets_dir: Path,
                                                                          tmp_path: Path) -> None:
    """Runs after the test above: same broker data, worker state and model repository. Stopped with SIGINT (what
    Ctrl-C sends) once a new list is shown."""
    web_port = free_port()
    run = RunProcess(_args(run_env, web_port), run_env, tmp_path / "run2.log")
    deadline = time.monotonic() + 600
    while run.output().count("── window #") < 2:  # the earlier run's last list, then a new one
        assert run.process.poll() is None and time.monotonic() < deadline, run.output()
        time.sleep(0.5)
    run.process.send_signal(signal.SIGINT)
    assert run.wait(timeout_s=180) == 0, run.output()
    output = run.output()
    assert re.search(r"stopped replay, worker, Kafka after \d+ s; [1-9]\d* list\(s\) shown", output), output
    assert "last published list (from an earlier run)" in output and "exporting" not in output
    assert "resuming: interactions already holds" in (Path(run_env["TRAIL_ROOT"]) / "state" / "replay.log").read_text()
    assert _processes_with(run_env["TRAIL_RUN_MARKER"]) == []
    broker = LocalKafka(data_dir=Path(run_env["TRAIL_KAFKA_DATA_DIR"]), port=int(run_env["TRAIL_KAFKA_PORT"]),
                        controller_port=int(run_env["TRAIL_KAFKA_CONTROLLER_PORT"]))
    with broker:
        windows = _trending(broker.bootstrap_servers)
        dlq = list(read_topic(KafkaSettings(bootstrap_servers=broker.bootstrap_servers), "interactions-dlq",
                              idle_timeout_s=2))
    assert len(windows) >= 3 and sorted(windows) == list(range(min(windows), max(windows) + 1))
    assert {i: w["stats"]["events_counted"] for i, w in windows.items()} == _dataset_counts(datasets_dir, set(windows))
    assert all(w["stats"]["late"] == 0 and w["stats"]["rejected"] == 0 for w in windows.values())
    assert dlq == []


def _dataset_counts(datasets_dir: Path, windows: set[int]) -> dict[int, float]:
    """Interactions per window of the dataset the run replayed (the shared one: ``trail run``'s default)."""
    spec = WindowSpec(parse_duration("7d"))
    counts: Counter[int] = Counter()
    for event in open_dataset("online-retail").interactions():
        index = spec.index_of(event.ts_ms)
        if index > max(windows):
            break
        if index in windows:
            counts[index] += event.weight
    return {index: float(counts[index]) for index in sorted(windows)}
