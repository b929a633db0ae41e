"""Examples from a small replay match labels computed by hand; splits are temporal; subsampling is balanced."""

from __future__ import annotations

from trail.events import Interaction, ItemMeta
from trail.prompt import render_prompt
from trail.windows import WindowSpec, parse_duration
from training.examples import build_examples, events_hash, subsample, temporal_split

HOUR = 3_600_000
START = 1_700_000_000_000 // HOUR * HOUR  # on an hour boundary


def _events(counts: dict[str, list[int]]) -> list[Interaction]:
    """``counts[item][w]`` events for ``item`` in hour ``w``, spread inside the hour, in time order."""
    events = []
    hours = max(len(c) for c in counts.values())
    for hour in range(hours):
        for item, per_hour in sorted(counts.items()):
            for n in range(per_hour[hour] if hour < len(per_hour) else 0):
                events.append(Interaction(item, START + hour * HOUR + n * 1000, user_id=f"u{n}"))
    return sorted(events, key=lambda e: e.ts_ms)


def test_labels_are_next_window_counts_including_zeros() -> None:
    counts = {"a": [3, 1, 0, 4, 2], "b": [0, 2, 2, 0, 5], "c": [1, 0, 0, 0, 1]}
    spec = WindowSpec(parse_duration("1h"), origin_ms=0)
    examples, digest = build_examples(_events(counts), spec, [ItemMeta("a", "Alpha", "X")])
    # Windows 0..3 close (the 5th hour's events stay in an open window); labelled windows are 0, 1, 2.
    # Items are tracked from their first event: b from hour 1.
    got = {(e.signals.item_id, e.window_index - examples[0].window_index): e.label for e in examples}
    assert got == {("a", 0): 1, ("c", 0): 0,
                   ("a", 1): 0, ("b", 1): 2, ("c", 1): 0,
                   ("a", 2): 4, ("b", 2): 0, ("c", 2): 0}
    first_a = next(e for e in examples if e.signals.item_id == "a")
    assert first_a.signals.title == "Alpha" and first_a.next_acceleration == 1 - 3
    assert digest == events_hash(_events(counts)) and len(digest) == 64
    assert "counts: 3 (now 3, prev 0, change +3)" in render_prompt(first_a.signals)


def test_temporal_split_never_mixes_windows() -> None:
    counts = {f"i{n}": [n % 3 + w % 4 for w in range(21)] for n in range(5)}
    examples, _ = build_examples(_events(counts), WindowSpec(parse_duration("1h"), origin_ms=0))
    split = temporal_split(examples)
    assert split.windows["train"][1] < split.windows["validation"][0] <= split.windows["validation"][1] \
        < split.windows["test"][0]
    assert len(split.train) + len(split.validation) + len(split.test) == len(examples)


def test_subsample_keeps_rising_and_falling_items() -> None:
    counts = {f"i{n}": [10, 10 + (n % 5) - 2] for n in range(40)} | {"z": [1, 1, 1]}
    examples, _ = build_examples(_events(counts), WindowSpec(parse_duration("1h"), origin_ms=0))
    picked = subsample(examples, per_window=9, seed=3)
    directions = [("rise" if e.next_acceleration > 0 else "fall" if e.next_acceleration < 0 else "level")
                  for e in picked]
    assert len(picked) == 9
    assert directions.count("rise") == directions.count("fall") == directions.count("level") == 3
    assert subsample(examples, per_window=9, seed=3) == picked
