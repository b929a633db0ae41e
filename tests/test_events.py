"""Schema validation: every rejection has a precise reason; nothing but InvalidEvent ever escapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trail.events import (
    EVENT_TYPES,
    LIMITS,
    Interaction,
    InvalidEvent,
    ItemMeta,
    format_ts,
    parse_interaction,
    parse_interactions,
    parse_item_meta,
    parse_ts,
)

VALID = {"item_id": "85123A", "ts": "2011-12-09T12:50:00Z", "event_type": "purchase", "user_id": "17850",
         "weight": 1.0, "event_id": "581587:541909"}


def reason_of(raw: bytes | str) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_interaction(raw)
    return info.value.reason


def test_valid_event_parses_to_exact_fields() -> None:
    event = parse_interaction(json.dumps(VALID).encode())
    assert event == Interaction("85123A", 1323435000000, "purchase", "17850", 1.0, "581587:541909")


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"\xff\xfe not utf8", "not_json", "UTF-8"),
        (b"{not json", "not_json", "not JSON"),
        (b'{"item_id": "a", "ts": NaN}', "not_json", "NaN"),
        (b"[1, 2]", "not_object", "array"),
        (b'"just a string"', "not_object", "string"),
        (json.dumps({k: v for k, v in VALID.items() if k != "item_id"}), "missing_field", "'item_id'"),
        (json.dumps({**VALID, "item_id": ""}), "missing_field", "'item_id'"),
        (json.dumps({**VALID, "ts": None}), "missing_field", "'ts'"),
        (json.dumps({**VALID, "item_id": ["x"]}), "wrong_type", "'item_id' must be a string, got array"),
        (json.dumps({**VALID, "item_id": True}), "wrong_type", "boolean"),
        (json.dumps({**VALID, "user_id": 1.5}), "wrong_type", "'user_id'"),
        (json.dumps({**VALID, "event_type": "teleport"}), "unknown_event_type", "teleport"),
        (json.dumps({**VALID, "ts": "yesterday"}), "bad_timestamp", "yesterday"),
        (json.dumps({**VALID, "ts": "1066-10-14T09:00:00Z"}), "bad_timestamp", "outside"),
        (json.dumps({**VALID, "ts": 1323435000000}), "bad_timestamp", "outside"),  # milliseconds sent as seconds
        (json.dumps({**VALID, "ts": {"s": 1}}), "wrong_type", "'ts'"),
        (json.dumps({**VALID, "weight": -1}), "bad_weight", "-1"),
        (json.dumps({**VALID, "weight": "3"}), "wrong_type", "'weight'"),
        ('{"item_id": "a", "ts": 1323435000, "weight": 1e999}', "bad_weight", "inf"),
        (json.dumps({**VALID, "item_id": "x" * (LIMITS.max_id_chars + 1)}), "string_too_long", "'item_id'"),
        (json.dumps({**VALID, "pad": "x" * LIMITS.max_payload_bytes}), "too_large", "limit"),
    ],
)
def test_each_rejection_names_its_reason(raw: bytes | str, reason: str, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_interaction(raw)
    assert info.value.reason == reason
    assert fragment in str(info.value)


def test_integer_ids_are_normalised_and_missing_optionals_default() -> None:
    event = parse_interaction(b'{"item_id": 42, "ts": 1323435000.5}')
    assert event == Interaction("42", 1323435000500, "view", None, 1.0, None)


def test_item_meta_validation() -> None:
    item = parse_item_meta(b'{"item_id": "1", "title": "MUG", "category": "MUG", "price": 2.5, "attributes": {"a": 1}}')
    assert item == ItemMeta("1", "MUG", "MUG", 2.5, {"a": 1})
    with pytest.raises(InvalidEvent, match="bad_price"):
        parse_item_meta(b'{"item_id": "1", "price": -2}')
    with pytest.raises(InvalidEvent, match="attribute 'nested'"):
        parse_item_meta(b'{"item_id": "1", "attributes": {"nested": {"x": 1}}}')


def test_timestamp_formats_agree() -> None:
    assert parse_ts("2011-12-09T12:50:00Z") == parse_ts("2011-12-09T13:50:00+01:00") == parse_ts(1323435000)
    assert parse_ts("2011-12-09 12:50:00") == 1323435000000  # no zone = UTC
    assert format_ts(1323435000123) == "2011-12-09T12:50:00.123Z"


ids = st.text(min_size=1, max_size=40)
interactions = st.builds(
    Interaction,
    item_id=ids,
    ts_ms=st.integers(LIMITS.min_ts_ms, LIMITS.max_ts_ms - 1),
    event_type=st.sampled_from(sorted(EVENT_TYPES)),
    user_id=st.none() | ids,
    weight=st.floats(0, LIMITS.max_weight, allow_nan=False),
    event_id=st.none() | ids,
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(interactions)
def test_every_valid_interaction_round_trips(event: Interaction) -> None:
    assert parse_interaction(event.to_json()) == event


@settings(max_examples=300, deadline=None)
@given(st.builds(ItemMeta, item_id=ids, title=st.text(max_size=60), category=st.none() | st.text(max_size=20),
                 price=st.none() | st.floats(0, 1e6, allow_nan=False),
                 attributes=st.dictionaries(st.text(max_size=10), st.text(max_size=10) | st.integers(-10**6, 10**6) | st.booleans(), max_size=5)))
def test_every_valid_item_round_trips(item: ItemMeta) -> None:
    assert parse_item_meta(item.to_json()) == item


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_invalid_event(raw: bytes) -> None:
    for parse in (parse_interaction, parse_item_meta):
        try:
            parse(raw)
        except InvalidEvent as exc:
            assert exc.reason and exc.message
        

@settings(max_examples=600, deadline=None)
@given(interactions, st.sampled_from(["item_id", "ts", "event_type", "user_id", "weight", "event_id", "extra"]),
       json_values | st.just("delete"))
def test_mutated_valid_events_are_accepted_or_rejected_with_a_reason(event: Interaction, field: str, value: object) -> None:
    record = event.to_dict()
    if value == "delete":
        record.pop(field, None)
    else:
        record[field] = value
    raw = json.dumps(record, allow_nan=True).encode()
    try:
        parsed = parse_interaction(raw)
    except InvalidEvent as exc:
        assert exc.reason in {"not_json", "not_object", "missing_field", "wrong_type", "unknown_event_type",
                              "bad_timestamp", "bad_weight", "too_large", "string_too_long"}
    else:
        assert parse_interaction(parsed.to_json()) == parsed


def test_a_batch_message_gives_one_result_per_event() -> None:
    good = {"item_id": "a", "ts": 1704067200}
    results = parse_interactions(json.dumps([good, {"ts": 1}, 7, {**good, "weight": -1}]).encode())
    assert results[0] == Interaction("a", 1704067200000)
    assert [r.reason for r in results[1:]] == ["missing_field", "not_object", "bad_weight"]
    assert "batch element 3" in str(results[3])
    assert parse_interactions(json.dumps(good)) == [Interaction("a", 1704067200000)]
    assert [r.reason for r in parse_interactions(b"{oops")] == ["not_json"]
    for raw, reason in ((b"[]", "not_object"), (json.dumps([good] * (LIMITS.max_batch_events + 1)), "too_large"),
                        (b"[" + b" " * LIMITS.max_batch_bytes + b"]", "too_large"), (b"[1, 2", "not_json")):
        with pytest.raises(InvalidEvent) as info:
            parse_interactions(raw)
        assert info.value.reason == reason


def test_a_message_without_a_value_is_refused_with_a_reason() -> None:
    """A tombstone or a producer's null value reaches the worker as None: refused, not a crash of the agent."""
    for parse in (parse_interactions, parse_interaction, parse_item_meta):
        with pytest.raises(InvalidEvent) as info:
            parse(None)
        assert (info.value.reason, info.value.message) == ("not_json", "the message has no value (null)")


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=6))
def test_random_batches_never_raise_anything_else(elements: list[object]) -> None:
    raw = json.dumps(elements, allow_nan=True).encode()
    try:
        results = parse_interactions(raw)
    except InvalidEvent as exc:
        assert exc.reason
    else:
        assert len(results) == len(elements)
        assert all(isinstance(r, (Interaction, InvalidEvent)) for r in results)
