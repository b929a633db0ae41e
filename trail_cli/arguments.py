"""Argument types shared by every ``trail`` verb: a bad value is one argparse error line, never a traceback."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

__all__ = ["http_url", "non_negative_float", "non_negative_int", "positive_float", "positive_int", "timestamp_ms",
           "unit_fraction"]


_Number = TypeVar("_Number", int, float)


def _number(text: str, parse: Callable[[str], _Number], accept: Callable[[_Number], bool], wording: str) -> _Number:
    """``parse(text)`` if it parses and ``accept`` holds for it; else one argparse error naming ``wording``."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda value: value > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda value: value >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda value: 0 < value < float("inf"), "a positive number")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda value: 0 <= value < float("inf"), "a number >= 0")


def unit_fraction(text: str) -> float:
    """A number in [0, 1] (a share, a correlation bar)."""
    return _number(text, float, lambda value: 0 <= value <= 1, "a number from 0 to 1")


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
