"""Argument types shared by every ``trail`` verb: a bad value is one argparse error line, never a traceback."""

from __future__ import annotations

import argparse

__all__ = ["http_url", "non_negative_float", "non_negative_int", "positive_float", "positive_int", "timestamp_ms",
           "unit_fraction"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """A number in [0, 1] (a share, a correlation bar)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def timestamp_ms(text: str) -> int:
    """An ISO-8601 date or time (UTC unless it says otherwise) → epoch milliseconds, as events' ``ts`` reads."""
    from trail.events import InvalidEvent, parse_ts

    try:
        return parse_ts(text)
    except InvalidEvent:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 date or time such as 2011-11-01, got {text!r}") from None


def http_url(text: str) -> str:
    """An http(s) address such as ``http://127.0.0.1:8000`` (a Triton server's HTTP endpoint)."""
    from urllib.parse import urlparse

    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:8000, got {text!r}")
    return text
