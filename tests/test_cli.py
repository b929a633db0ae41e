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
