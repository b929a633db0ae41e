"""Soak: the `make run` path (own broker, shipped model, worker, replay) started and stopped several times in a row
on the kept state, alternating the embedded ONNX backend and Triton. Every start must publish a new list within
3 minutes of the worker being healthy, and stop cleanly; a hang fails with the worker's Python stacks (py-spy).

``TRAIL_SOAK_CYCLES`` sets the number of starts (default 2, one per backend, to keep CI short; run more by hand)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from localstack import free_port

from .conftest import kill_processes_with, processes_with
from .test_run_product import RunProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CYCLES = int(os.environ.get("TRAIL_SOAK_CYCLES", "2"))
FIRST_LIST_S = 180.0  # from "worker: healthy" to a newly published list
EVENTS_PER_CYCLE = 30_000


@pytest.fixture(scope="module")
def soak_env(tmp_path_factory: pytest.TempPathFactory, shipped_export) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("soak")
    repository = root / "triton_models"
    shutil.copytree(shipped_export.folder.parent, repository / "trail")
    env = {**os.environ, "TRAIL_KAFKA_PORT": str(free_port()), "TRAIL_KAFKA_CONTROLLER_PORT": str(free_port()),
           "TRAIL_KAFKA_DATA_DIR": str(root / "kafka"), "TRAIL_MODEL_REPOSITORY": str(repository),
           "TRAIL_SOAK_MARKER": str(root), "TRAIL_ROOT": str(root)}
    yield env
    kill_processes_with(str(root))


def _worker_stacks(marker: str) -> str:
    """The Python stacks of the run's worker, for the failure message of a hang."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    dumps = []
    for pid, command in processes_with(marker).items():
        if "streams.app worker" in command and Path(py_spy).exists():
            done = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
            dumps.append(done.stdout[-6000:] + done.stderr[-500:])
    return "\n".join(dumps) or "(no worker process to dump)"


def test_make_run_restarted_again_and_again_always_publishes_and_stops(soak_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    root = Path(soak_env["TRAIL_ROOT"])
    timings = []
    for cycle in range(1, CYCLES + 1):
        backend = "onnx" if cycle % 2 else "triton"
        web_port = free_port()
        # each start replays 30,000 more events (1–3 weeks) (the replay resumes; the limit counts every interaction in the topic),
        # so every start has new windows to publish however many starts the soak makes
        run = RunProcess(["--backend", backend, "--limit", str(cycle * EVENTS_PER_CYCLE), "--speed", "100000",
                          "--candidates", "8", "--top-k", "3",
                          "--web-port", str(web_port), "--state-dir", str(root / "state"), "--max-windows", "1"],
                         soak_env, tmp_path / f"run{cycle}.log")
        try:
            run.wait_for("worker: healthy", timeout_s=300)
            healthy = time.monotonic()
            before = run.output().count("── window #") - ("last published list" in run.output())
            deadline = healthy + FIRST_LIST_S
            while run.output().count("── window #") - ("last published list" in run.output()) <= before:
                if time.monotonic() > deadline:
                    stacks = _worker_stacks(soak_env["TRAIL_SOAK_MARKER"])
                    pytest.fail(f"cycle {cycle} ({backend}): no new list within {FIRST_LIST_S:.0f} s of the worker "
                                f"being healthy\n{run.output()[-3000:]}\nworker stacks:\n{stacks}")
                assert run.process.poll() is None, run.output()
                time.sleep(0.5)
            first_list_s = time.monotonic() - healthy
            assert run.wait(timeout_s=600) == 0, run.output()
        finally:
            kill_processes_with(soak_env["TRAIL_SOAK_MARKER"])
        output = run.output()
        assert re.search(r"stopped replay, worker, (Triton, )?Kafka after \d+ s", output), output
        assert processes_with(soak_env["TRAIL_SOAK_MARKER"]) == {}
        timings.append((cycle, backend, round(first_list_s, 1)))
    print("cycle, backend, seconds from a healthy worker to its first new list:", timings)
