"""What every dataset adapter provides: a catalogue and a time-ordered stream of interactions."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Protocol

from trail.errors import TrailError
from trail.events import Interaction, ItemMeta

__all__ = ["Dataset", "DatasetError", "DatasetStats", "open_text"]


class DatasetError(TrailError, ValueError):
    """A dataset file is missing or not in the format its adapter reads; the message names the file."""


class Dataset(Protocol):
    """A source of real events. ``items()`` may be read before ``interactions()``; both stream from disk and
    can be iterated more than once. ``interactions()`` is in event-time order (ties keep file order)."""

    name: str

    def items(self) -> Iterator[ItemMeta]: ...

    def interactions(self) -> Iterator[Interaction]: ...


@dataclass(frozen=True)
class DatasetStats:
    """Summary of one pass over a dataset, printed by ``trail replay --dry-run`` and checked by the tests."""

    items: int
    interactions: int
    distinct_items_interacted: int
    first_ts_ms: int | None
    last_ts_ms: int | None

    @classmethod
    def of(cls, dataset: Dataset) -> "DatasetStats":
        count = 0
        seen: set[str] = set()
        first = last = None
        for event in dataset.interactions():
            count += 1
            seen.add(event.item_id)
            if first is None:
                first = event.ts_ms
            last = event.ts_ms
        return cls(sum(1 for _ in dataset.items()), count, len(seen), first, last)


def open_text(path: Path, what: str) -> IO[str]:
    """A UTF-8 CSV file for the csv module, gunzipped on the fly when it ends in ``.gz``."""
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")
