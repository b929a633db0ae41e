"""Event-time ordering for inputs too large to sort in memory: sorted runs spilled to disk, then a k-way merge."""

from __future__ import annotations

import heapq
import json
import tempfile
from itertools import islice
from typing import IO, Iterable, Iterator

from trail.events import Interaction

__all__ = ["sorted_by_time"]


def sorted_by_time(events: Iterable[Interaction], max_in_memory: int = 500_000) -> Iterator[Interaction]:
    """Yield ``events`` ordered by ``ts_ms``; equal timestamps keep their input order (a stable sort).

    At most ``max_in_memory`` events are held at once: longer inputs are cut into sorted runs written to
    temporary files, which are merged lazily and deleted afterwards.
    """
    iterator = iter(events)
    runs: list[IO[str]] = []
    try:
        sequence = 0
        while True:
            chunk = list(islice(iterator, max_in_memory))
            if not chunk:
                break
            chunk.sort(key=lambda event: event.ts_ms)
            if not runs and len(chunk) < max_in_memory:
                yield from chunk  # everything fitted in memory: no disk
                return
            run = tempfile.TemporaryFile("w+", encoding="utf-8")
            for event in chunk:
                run.write(json.dumps([event.ts_ms, sequence, _row(event)]) + "\n")
                sequence += 1
            run.seek(0)
            runs.append(run)
        for _, _, row in heapq.merge(*(_read_run(run) for run in runs)):
            yield Interaction(*row)
    finally:
        for run in runs:
            run.close()


def _row(event: Interaction) -> list[object]:
    return [event.item_id, event.ts_ms, event.event_type, event.user_id, event.weight, event.event_id]


def _read_run(run: IO[str]) -> Iterator[tuple[int, int, list[object]]]:
    for line in run:
        ts_ms, sequence, row = json.loads(line)
        yield ts_ms, sequence, row
