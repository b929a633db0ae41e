"""The trend tracker against batch recomputation, state round trips, bounded memory, partition independence."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trail.events import Interaction
from trail.signals import ItemTrend, PartitionSummary, TrendConfig, WindowBoard
from trail.replay import replay_windows
from trail.tracker import (ItemRecord, _hll_add, _hll_count, _users_sketch, apply_event, close_partition_window,
                          select_candidates)
from trail.windows import WindowSpec, parse_duration

CONFIG = TrendConfig()


def _ewm(values: list[float], alpha: float) -> float:
    mean = values[0]
    for x in values[1:]:
        mean = alpha * x + (1 - alpha) * mean
    return mean


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 500).map(float), min_size=1, max_size=30))
def test_every_window_matches_a_batch_recomputation(counts: list[float]) -> None:
    trend = ItemTrend(CONFIG, first_window=10)
    for step, count in enumerate(counts):
        window = trend.close("x", 10 + step, count)
        seen = counts[: step + 1]
        before = counts[:step]
        assert window.history == tuple(seen[-CONFIG.history_length:])
        assert window.previous_count == (before[-1] if before else 0.0)
        assert window.velocity == count and window.acceleration == count - window.previous_count
        assert window.ewm_fast == pytest.approx(_ewm(seen, CONFIG.fast_fading), rel=1e-9, abs=1e-9)
        assert window.ewm_slow == pytest.approx(_ewm(seen, CONFIG.slow_fading), rel=1e-9, abs=1e-9)
        level = sum(before) / len(before) if before else 0.0
        assert window.long_term_mean == pytest.approx(level)
        assert window.level_ratio == pytest.approx((count + 1) / (level + 1))
        assert window.age_windows == step
        assert window.forecast >= 0 and math.isfinite(window.forecast)
        idle = 0
        for value in reversed(seen):
            if value:
                break
            idle += 1
        assert window.idle_windows == idle


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50).map(float), min_size=2, max_size=20), st.integers(1, 18))
def test_state_round_trips_through_json_mid_stream(counts: list[float], cut: int) -> None:
    cut = min(cut, len(counts) - 1)
    straight = ItemTrend(CONFIG, 0)
    resumed = ItemTrend(CONFIG, 0)
    for step, count in enumerate(counts[:cut]):
        straight.close("x", step, count)
        resumed.close("x", step, count)
    resumed = ItemTrend.from_state(CONFIG, json.loads(json.dumps(resumed.to_state())))
    for step, count in enumerate(counts[cut:], start=cut):
        assert straight.close("x", step, count) == resumed.close("x", step, count)


def test_closing_out_of_order_is_refused() -> None:
    trend = ItemTrend(CONFIG, 0)
    trend.close("x", 0, 1.0)
    with pytest.raises(ValueError, match="window 5 closed after window 0"):
        trend.close("x", 5, 1.0)


def test_redelivered_events_are_not_counted_twice() -> None:
    record = ItemRecord("a")
    event = Interaction("a", 1_000_000_000_000, user_id="u")
    assert apply_event(record, event, 3, offset=7)
    assert not apply_event(record, event, 3, offset=7)
    assert not apply_event(record, event, 3, offset=2)
    assert record.open_counts == {3: 1.0}


def test_idle_items_are_evicted_so_state_stays_bounded() -> None:
    config = TrendConfig(evict_after_idle_windows=3)
    records = {}
    for window in range(40):
        for n in range(50):  # fifty new items every window, each seen once
            record = records.setdefault(f"w{window}-{n}", ItemRecord(f"w{window}-{n}"))
            apply_event(record, Interaction(record.item_id, 1_000_000_000_000), window)
        close_partition_window(records, window, config, n_candidates=10)
        assert len(records) <= 50 * (config.evict_after_idle_windows + 1)


def _events(seed: int, n: int) -> list[Interaction]:
    rng = random.Random(seed)
    start = 1_600_000_000_000
    return [Interaction(f"item{int(rng.paretovariate(1.2)) % 300}", start + i * 60_000 + rng.randrange(60_000),
                        user_id=f"u{rng.randrange(400)}", event_id=str(i)) for i in range(n)]


@pytest.mark.parametrize("partitions", [2, 3, 5])
def test_partitioned_tracking_equals_one_partition(partitions: int) -> None:
    """Ranks, category totals and candidates merged from several partitions equal a single partition's."""
    spec = WindowSpec(parse_duration("1h"))
    events = sorted(_events(1, 20_000), key=lambda e: e.ts_ms)
    single = list(replay_windows(events, spec, CONFIG, n_candidates=40))
    shards: list[dict[str, ItemRecord]] = [{} for _ in range(partitions)]
    board = WindowBoard(board_size=CONFIG.board_size)
    closed = spec.index_of(events[0].ts_ms) - 1
    results = {}
    for event in events:
        index = spec.index_of(event.ts_ms)
        shard = shards[hash(event.item_id) % partitions]
        apply_event(shard.setdefault(event.item_id, ItemRecord(event.item_id)), event, index)
        for window in range(closed + 1, spec.last_closable(event.ts_ms) + 1):
            closes = [close_partition_window(shard, window, CONFIG, 40) for shard in shards]
            board.close(window, [c.summary for c in closes])
            results[window] = (dict(board.ranks), select_candidates((c.candidates for c in closes), 40),
                               sum(len(c.windows) for c in closes))
            closed = window
    assert len(single) == len(results) > 10
    for reference in single:
        ranks, candidates, tracked = results[reference.index]
        assert {s.item_id: s.rank for s in reference.signals if s.rank} == ranks
        assert [c.window for c in candidates] == [s.item for s in reference.candidates]
        assert tracked == reference.stats.items_tracked


def test_summary_round_trip() -> None:
    summary = PartitionSummary(4, (("a", 3.0), ("b", 1.0)), {"MUG": 4.0}, 2)
    assert PartitionSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary


def test_item_record_round_trips_through_json() -> None:
    record = ItemRecord("a", "Alpha", "X")
    for window in range(3):
        apply_event(record, Interaction("a", 1_000_000_000_000, user_id=f"u{window}"), window, offset=window)
        close_partition_window({"a": record}, window, CONFIG, 5)
    apply_event(record, Interaction("a", 1_000_000_000_000, user_id="v"), 3, offset=9)
    restored = ItemRecord.from_state(json.loads(json.dumps(record.to_state())), CONFIG)
    assert restored.last == record.last and restored.open == record.open
    assert restored.trend is not None and restored.trend.to_state() == record.trend.to_state()
    assert (restored.title, restored.category, restored.applied_offset) == ("Alpha", "X", 9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=64, max_size=64),
       st.sets(st.text(min_size=1, max_size=8), max_size=300))
def test_distinct_user_estimate_equals_rivers(registers: list[int], users: set[str]) -> None:
    """The restated estimate gives River's ``NUnique.get`` numbers, on arbitrary and on real registers."""
    assert _hll_count(registers) == _users_sketch(list(registers)).get()
    real = [0] * 64
    for user in users:
        _hll_add(real, user)
    assert _hll_count(real) == _users_sketch(real).get()


def test_a_record_stored_windows_ago_catches_up_to_the_same_signals() -> None:
    """The worker stores an idle item's trend only when it has events: a record restored from a state some
    windows old closes the next window exactly as the record that was closed every window."""
    live = ItemRecord("a", "Alpha", "X")
    stored = None
    for window in range(12):
        if window in (0, 1, 2, 7):
            apply_event(live, Interaction("a", 1_000_000_000_000, user_id=f"u{window}"), window, offset=window)
        consumed = live.closes_counts(window)
        open_as_stored = live.open.to_state()  # the worker's o/ key keeps the counts a close consumed
        close_partition_window({"a": live}, window, CONFIG, 5)
        if consumed:
            stored = json.loads(json.dumps({**live.to_state(), "open": open_as_stored}))
    assert stored is not None and stored["trend"]["last"][1] == 7  # last stored at window 7, the last with events
    apply_event(live, Interaction("a", 1_000_000_000_000, user_id="v"), 12, offset=20)
    restored = ItemRecord.from_state(stored, CONFIG)
    apply_event(restored, Interaction("a", 1_000_000_000_000, user_id="v"), 12, offset=20)
    closed_live = close_partition_window({"a": live}, 12, CONFIG, 5)
    closed_restored = close_partition_window({"a": restored}, 12, CONFIG, 5)
    assert closed_restored.windows == closed_live.windows
    assert restored.trend.to_state() == live.trend.to_state()
