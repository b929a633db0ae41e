"""Training and evaluation examples, made by replaying a dataset through the worker's own signal code.

For every closed window ``t`` and every item tracked at its close, an :class:`Example` holds the item's
:class:`~trail.signals.TrendSignals` at ``t`` and the label: the item's count in window ``t + 1`` (zero when it
had no events then). The last closed window has no label and is left out. Splits are by window, never by item,
so no example is trained on the future of another.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from trail.errors import ConfigError
from trail.events import Interaction, ItemMeta
from trail.signals import TrendConfig, TrendSignals
from trail.replay import replay_windows
from trail.windows import WindowSpec

__all__ = ["Example", "Split", "build_examples", "events_hash", "subsample", "temporal_split"]


@dataclass(frozen=True)
class Example:
    signals: TrendSignals
    label: float  # the item's count in the next window

    @property
    def window_index(self) -> int:
        return self.signals.item.window_index

    @property
    def next_acceleration(self) -> float:
        return self.label - self.signals.item.count


@dataclass(frozen=True)
class Split:
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    windows: dict[str, tuple[int, int]]  # split → (first window, last window)


class _HashingStream:
    """Passes events through while hashing what defines them (so the hash costs no second pass)."""

    def __init__(self, events: Iterable[Interaction]) -> None:
        self._events = events
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[Interaction]:
        for event in self._events:
            self._digest.update(f"{event.item_id}\x1f{event.ts_ms}\x1f{event.weight!r}\x1e".encode())
            yield event

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def events_hash(events: Iterable[Interaction]) -> str:
    """sha256 over (item_id, ts, weight) of every event, in order: names the data a model was trained on."""
    stream = _HashingStream(events)
    for _ in stream:
        pass
    return stream.hexdigest()


def build_examples(
    interactions: Iterable[Interaction],
    spec: WindowSpec,
    items: Iterable[ItemMeta] = (),
    config: TrendConfig = TrendConfig(),
) -> tuple[list[Example], str]:
    """Every labelled (item, window) of a replay, in window order then item id; and the events' hash."""
    stream = _HashingStream(interactions)
    examples: list[Example] = []
    previous: tuple[TrendSignals, ...] | None = None
    previous_index: int | None = None
    for window in replay_windows(stream, spec, config, items):
        if previous is not None and previous_index == window.index - 1:
            counts = {s.item_id: s.item.count for s in window.signals}
            examples.extend(Example(s, counts.get(s.item_id, 0.0)) for s in previous)
        previous, previous_index = window.signals, window.index
    return examples, stream.hexdigest()


def temporal_split(examples: Sequence[Example], validation: float = 0.15, test: float = 0.15) -> Split:
    """The last ``test`` share of windows is the test set, the ``validation`` share before it validation."""
    windows = sorted({e.window_index for e in examples})
    if len(windows) < 3:
        raise ConfigError(f"a temporal split needs at least 3 labelled windows, got {len(windows)}")
    n_test = max(1, round(len(windows) * test))
    n_validation = max(1, round(len(windows) * validation))
    test_windows = set(windows[-n_test:])
    validation_windows = set(windows[-n_test - n_validation:-n_test])
    parts: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for example in examples:
        key = ("test" if example.window_index in test_windows
               else "validation" if example.window_index in validation_windows else "train")
        parts[key].append(example)
    bounds = {name: (min(e.window_index for e in part), max(e.window_index for e in part))
              for name, part in parts.items() if part}
    return Split(tuple(parts["train"]), tuple(parts["validation"]), tuple(parts["test"]), bounds)


def subsample(examples: Sequence[Example], per_window: int, seed: int = 0) -> list[Example]:
    """At most ``per_window`` examples per window for LLM training, balanced between items whose next count
    rises, falls and stays level (each group gets an equal share; leftovers go to the largest groups), so the
    model sees both directions however skewed the data."""
    rng = random.Random(seed)
    by_window: dict[int, list[Example]] = {}
    for example in examples:
        by_window.setdefault(example.window_index, []).append(example)
    chosen: list[Example] = []
    for window in sorted(by_window):
        groups: dict[str, list[Example]] = {"rise": [], "fall": [], "level": []}
        for example in by_window[window]:
            delta = example.next_acceleration
            groups["rise" if delta > 0 else "fall" if delta < 0 else "level"].append(example)
        for group in groups.values():
            rng.shuffle(group)
        quota = per_window
        take: dict[str, int] = {name: 0 for name in groups}
        while quota > 0 and any(take[n] < len(g) for n, g in groups.items()):
            for name in ("rise", "fall", "level"):
                if quota > 0 and take[name] < len(groups[name]):
                    take[name] += 1
                    quota -= 1
        chosen.extend(e for name, group in groups.items() for e in group[: take[name]])
    return chosen
