"""Bad command lines get one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from .conftest import run_trail


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["replay", "online-retail", "--limit", "-5"], "argument --limit: expected a positive integer, got '-5'"),
        (["replay", "online-retail", "--rate", "fast"], "argument --rate: expected a positive number, got 'fast'"),
        (["replay", "nosuchdata", "--limit", "1"], "unknown dataset 'nosuchdata'"),
        (["replay", "online-retail", "--path", "/nonexistent.csv.gz", "--limit", "1"], "dataset path not found: /nonexistent.csv.gz"),
        (["replay", "csv", "--path", "/tmp", "--map", "item=x"], "unknown field 'item'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["tail"], "the following arguments are required: topic"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], fragment: str) -> None:
    import os

    done = run_trail(*args, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, timeout=120)
    message = done.stderr.decode().strip()
    assert done.returncode in (1, 2)
    assert "Traceback" not in message and message.count("\n") == 0, message
    assert fragment in message


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ({"TRAIL_CANDIDATES": "lots"}, "TRAIL_CANDIDATES='lots' is not an integer"),
        ({"TRAIL_STALL_AFTER": "soon"}, "TRAIL_STALL_AFTER='soon' is not a number"),
        ({"TRAIL_TOP_K": "50", "TRAIL_CANDIDATES": "10"}, "TRAIL_TOP_K (50) cannot exceed TRAIL_CANDIDATES (10)"),
        ({"TRAIL_WINDOW": "weekly"}, "duration 'weekly' is not a number followed by s, m, h, d or w"),
        ({"TRAIL_BACKEND": "gpu"}, "TRAIL_BACKEND='gpu' is not a known backend"),
    ],
)
def test_bad_settings_are_one_line(setting: dict[str, str], fragment: str) -> None:
    """Every error meant for the user derives from trail.errors.TrailError; the CLI prints those as one line."""
    import os

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **setting}
    done = run_trail("worker", env=env, timeout=120)
    message = done.stderr.decode().strip()
    assert done.returncode == 1
    assert "Traceback" not in message and message.count("\n") == 0, message
    assert fragment in message


def test_parsing_a_command_line_imports_no_model_library() -> None:
    """Every `trail` verb builds the whole parser first: a bad argument, `--help` and the light verbs (replay,
    kafka up) must not wait for torch, transformers, peft or River to import (that took 9 s per call here)."""
    import subprocess
    import sys

    from .conftest import PROJECT_ROOT

    probe = ("import sys; from trail_cli.main import build_parser; build_parser(); "
             "print(' '.join(sorted(m for m in ('torch', 'transformers', 'peft', 'river', 'onnxruntime') "
             "if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "", f"building the CLI parser imported: {done.stdout.strip()}"
