"""The partition clock and the re-key protocol without a broker: marks, lateness, stats, state, and a simulation of
partitions that forward each other events in any interleaving — the windows they close count exactly what the
offline replay counts."""

from __future__ import annotations

import json
import random
from collections import Counter, deque

import pytest

from trail.partition_clock import Mark, PartitionClock
from streams.routing import FORWARD_CHUNK, Forwarded, forward_messages, mark_message, parse_rekeyed, partition_owner
from trail.events import Interaction
from trail.windows import WindowSpec

SPEC = WindowSpec(size_ms=1_000, origin_ms=0)


def test_one_partition_closes_a_window_once_its_own_input_has_passed_it() -> None:
    clock = PartitionClock(0)
    assert clock.observe(5_100, 5, SPEC)  # the first event: window 5 is the first, nothing closable yet
    assert list(clock.windows_to_close(1)) == []
    assert not clock.observe(5_900, 5, SPEC)
    assert clock.observe(6_000, 6, SPEC)
    assert list(clock.windows_to_close(1)) == [5]
    clock.closed = 5
    assert clock.observe(9_500, 9, SPEC)
    assert list(clock.windows_to_close(1)) == [6, 7, 8]


def test_a_partition_waits_for_every_other_ones_mark_and_starts_at_the_earliest_first_window() -> None:
    clock = PartitionClock(1)
    clock.observe(7_100, 7, SPEC)
    clock.observe(9_000, 9, SPEC)
    assert list(clock.windows_to_close(3)) == []  # partitions 0 and 2 have not said how far they are
    clock.receive_mark(0, Mark(5, 7))
    assert list(clock.windows_to_close(3)) == []
    clock.receive_mark(2, Mark(None, 10))  # a partition with no events yet (live mode: the wall clock)
    assert list(clock.windows_to_close(3)) == []  # where to start is known only once every first window is
    clock.receive_mark(2, Mark(8, 10))
    assert list(clock.windows_to_close(3)) == [5, 6, 7]
    clock.closed = 7
    clock.receive_mark(0, Mark(5, 6))  # a repeated, older mark (the sender restarted) moves nothing back
    assert clock.marks[0] == Mark(5, 7)
    clock.receive_mark(0, Mark(5, 12))
    assert list(clock.windows_to_close(3)) == [8]


def test_lateness_is_judged_against_the_partitions_own_input() -> None:
    clock = PartitionClock(0)
    clock.observe(5_000, 5, SPEC)
    assert clock.is_late(4)  # before the first window seen
    clock.observe(8_200, 8, SPEC)
    assert clock.is_late(7) and not clock.is_late(8)


def test_late_and_rejected_counts_go_to_the_first_window_their_move_lets_close() -> None:
    clock = PartitionClock(0)
    clock.rejected = 2  # rejected before any valid event
    clock.observe(5_000, 5, SPEC)
    clock.late = 1
    clock.observe(8_200, 8, SPEC)  # windows 5, 6, 7 closable
    assert clock.report_stats(5) == (1, 2) and clock.report_stats(6) == (0, 0)


def test_clock_state_round_trips_through_json() -> None:
    clock = PartitionClock(2, forwarded_seen={0: 17})
    clock.observe(5_000, 5, SPEC)
    clock.observe(7_000, 7, SPEC)
    clock.receive_mark(1, Mark(4, 6))
    clock.late = 3
    restored = PartitionClock.from_state(2, json.loads(json.dumps(clock.to_state())))
    assert restored == clock


def test_forwarded_events_and_marks_round_trip_in_bounded_messages() -> None:
    events = [(i * 1024, Interaction(f"item-{i}", 1_000 + i, "purchase", f"u{i}", 2.0, None)) for i in range(1_201)]
    messages = forward_messages(1, events)
    assert [len(m["events"]) for m in messages] == [FORWARD_CHUNK, FORWARD_CHUNK, 201]
    parsed = [parse_rekeyed(json.loads(json.dumps(m))) for m in messages]
    assert all(isinstance(p, Forwarded) and p.source == 1 for p in parsed)
    assert [e for p in parsed for e in p.events] == events  # type: ignore[union-attr]
    assert parse_rekeyed(mark_message(2, Mark(None, 9))) == (2, Mark(None, 9))


@pytest.mark.parametrize("seed", range(5))
def test_partitions_forwarding_in_any_interleaving_count_what_the_offline_replay_counts(seed: int) -> None:
    """Events in time order, put on random partitions (as a producer with another partitioner would); each
    partition counts its own items, forwards the others' and sends marks; channels deliver in order but interleave
    at random. Every window each owner closes holds exactly the offline counts."""
    rng = random.Random(seed)
    partitions = 3
    owner = partition_owner(partitions)
    events = sorted((Interaction(f"item-{rng.randrange(40)}", rng.randrange(10_000, 20_000)) for _ in range(3_000)),
                    key=lambda e: e.ts_ms)
    expected: Counter[tuple[int, str]] = Counter((SPEC.index_of(e.ts_ms), e.item_id) for e in events)
    last_closable = SPEC.last_closable(events[-1].ts_ms)

    clocks = [PartitionClock(p) for p in range(partitions)]
    counted: Counter[tuple[int, str]] = Counter()
    closed: dict[int, list[int]] = {p: [] for p in range(partitions)}
    channels = {(q, p): deque() for q in range(partitions) for p in range(partitions) if q != p}
    inputs = {p: deque() for p in range(partitions)}
    for position, event in enumerate(events):
        inputs[rng.randrange(partitions)].append((position, event))

    def close_ready(p: int) -> None:
        for window in clocks[p].windows_to_close(partitions):
            closed[p].append(window)
            clocks[p].closed = window

    def step_input(q: int) -> None:
        position, event = inputs[q].popleft()
        clock, window = clocks[q], SPEC.index_of(event.ts_ms)
        assert not clock.is_late(window)  # time-ordered input: nothing is late
        if owner(event.item_id) == q:
            counted[(window, event.item_id)] += 1
        else:
            channels[(q, owner(event.item_id))].append(("event", event))
        if clock.observe(event.ts_ms, window, SPEC):
            for p in range(partitions):
                if p != q:
                    channels[(q, p)].append(("mark", clock.own_mark()))
            close_ready(q)

    def step_channel(q: int, p: int) -> None:
        kind, payload = channels[(q, p)].popleft()
        if kind == "event":
            window = SPEC.index_of(payload.ts_ms)
            assert clocks[p].closed is None or window > clocks[p].closed, "a forwarded event came after its close"
            counted[(window, payload.item_id)] += 1
        else:
            clocks[p].receive_mark(q, payload)
            close_ready(p)

    while any(inputs.values()) or any(channels.values()):
        choices = [("in", q) for q, queue in inputs.items() if queue]
        choices += [("ch", key) for key, queue in channels.items() if queue]
        kind, where = rng.choice(choices)
        step_input(where) if kind == "in" else step_channel(*where)  # type: ignore[misc]

    first = SPEC.index_of(events[0].ts_ms)
    for p in range(partitions):
        assert closed[p] == list(range(first, last_closable + 1))
    assert counted == expected
