"""Event schemas: what producers write to the ``interactions`` and ``items`` topics.

Every event that enters TRAIL passes through :func:`parse_interaction` or :func:`parse_item_meta`. They accept
raw bytes exactly as a producer sent them and either return a validated record or raise :class:`InvalidEvent`
whose ``reason`` is a short machine-readable code and whose message names the field and the value. Nothing else
escapes: the dead-letter path depends on that.

Timestamps are held as integer milliseconds since the Unix epoch (UTC) so that JSON round trips are exact;
on the wire ``ts`` is an ISO-8601 string (``2011-12-09T12:50:00.000Z``; an offset or no zone, read as UTC) or a
number of seconds since the epoch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .errors import TrailError

__all__ = [
    "EVENT_TYPES",
    "Interaction",
    "InvalidEvent",
    "ItemMeta",
    "Limits",
    "LIMITS",
    "POSITIONS_PER_MESSAGE",
    "format_ts",
    "parse_interaction",
    "parse_interactions",
    "parse_item_meta",
    "parse_ts",
]

# The worker orders events by position = offset × this + index in the message's batch, and stores positions in
# its state: a batch must have fewer events than this, and the value must never change.
POSITIONS_PER_MESSAGE = 1024

EVENT_TYPES: frozenset[str] = frozenset(
    {"view", "click", "add_to_cart", "purchase", "rating", "vote", "answer", "comment", "like", "share"}
)


@dataclass(frozen=True)
class Limits:
    """Bounds on what a producer may send; an event outside them is rejected, never truncated."""

    max_payload_bytes: int = 16_384
    max_id_chars: int = 256  # item_id, user_id, event_id
    max_text_chars: int = 1_024  # title, category
    max_attributes: int = 64
    max_attribute_chars: int = 1_024  # each attribute key and string value
    # Event time must fall in [min_ts_ms, max_ts_ms): before 1990 or after 2100 is a producer bug (seconds sent
    # as milliseconds, a zero default, ...) and would wreck the windows' watermark.
    min_ts_ms: int = 631_152_000_000  # 1990-01-01T00:00:00Z
    max_ts_ms: int = 4_102_444_800_000  # 2100-01-01T00:00:00Z
    max_weight: float = 1e9
    max_price: float = 1e12
    max_batch_events: int = 1_000  # a message may carry a JSON array of interactions (high-volume producers)
    max_batch_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        if self.max_batch_events >= POSITIONS_PER_MESSAGE:
            raise ValueError(f"max_batch_events ({self.max_batch_events}) must stay below POSITIONS_PER_MESSAGE "
                             f"({POSITIONS_PER_MESSAGE}): the worker numbers a batch's events within one offset")


LIMITS = Limits()


class InvalidEvent(TrailError, ValueError):
    """A producer's event that TRAIL refuses; ``reason`` is a stable code, the message says what and where."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user interaction with one item at one moment of event time."""

    item_id: str
    ts_ms: int
    event_type: str = "view"
    user_id: str | None = None
    weight: float = 1.0
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id, "ts": format_ts(self.ts_ms), "event_type": self.event_type}
        if self.user_id is not None:
            out["user_id"] = self.user_id
        out["weight"] = self.weight
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, obj: Any, limits: Limits = LIMITS) -> "Interaction":
        if not isinstance(obj, dict):
            raise InvalidEvent("not_object", f"an interaction must be a JSON object, got {_json_type(obj)}")
        event_type = _optional_str(obj, "event_type", limits.max_id_chars) or "view"
        if event_type not in EVENT_TYPES:
            raise InvalidEvent(
                "unknown_event_type",
                f"event_type {event_type[:40]!r} is not one of {', '.join(sorted(EVENT_TYPES))}",
            )
        return cls(
            item_id=_required_id(obj, "item_id", limits),
            ts_ms=parse_ts(_required(obj, "ts"), limits),
            event_type=event_type,
            user_id=_optional_id(obj, "user_id", limits),
            weight=_weight(obj, limits),
            event_id=_optional_id(obj, "event_id", limits),
        )


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """Catalogue facts about an item, published to the compacted ``items`` topic keyed by item_id."""

    item_id: str
    title: str = ""
    category: str | None = None
    price: float | None = None
    attributes: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id, "title": self.title}
        if self.category is not None:
            out["category"] = self.category
        if self.price is not None:
            out["price"] = self.price
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, obj: Any, limits: Limits = LIMITS) -> "ItemMeta":
        if not isinstance(obj, dict):
            raise InvalidEvent("not_object", f"an item must be a JSON object, got {_json_type(obj)}")
        price = obj.get("price")
        if price is not None:
            if not _is_number(price):
                raise InvalidEvent("wrong_type", f"field 'price' must be a number, got {_json_type(price)}")
            if not _finite(price) or not 0 <= price <= limits.max_price:
                raise InvalidEvent("bad_price", f"field 'price' must be finite and in [0, {limits.max_price:g}], got {price!r}")
            price = float(price)
        return cls(
            item_id=_required_id(obj, "item_id", limits),
            title=_optional_str(obj, "title", limits.max_text_chars) or "",
            category=_optional_str(obj, "category", limits.max_text_chars),
            price=price,
            attributes=_attributes(obj.get("attributes"), limits),
        )


def parse_interaction(raw: bytes | str | None, limits: Limits = LIMITS) -> Interaction:
    """Validate one interaction exactly as received from Kafka; raises only :class:`InvalidEvent`."""
    return Interaction.from_dict(_load_json(raw, limits), limits)


def parse_interactions(raw: bytes | str | None, limits: Limits = LIMITS) -> list[Interaction | InvalidEvent]:
    """A message holding one interaction (a JSON object) or a batch (a JSON array of up to ``max_batch_events``
    objects): one result per event, in order, each either valid or an :class:`InvalidEvent` naming its index.
    A message that cannot be read at all (not JSON, too large, empty or over-long array) raises
    :class:`InvalidEvent` instead."""
    if raw is None:
        raise _null_value()
    text = raw.lstrip()[:1] if isinstance(raw, str) else bytes(raw).lstrip()[:1]
    if text not in ("[", b"["):
        try:
            return [parse_interaction(raw, limits)]
        except InvalidEvent as exc:
            return [exc]
    batch = _load_json(raw, limits, max_bytes=limits.max_batch_bytes)
    if not batch:
        raise InvalidEvent("not_object", "an empty array holds no interaction")
    if len(batch) > limits.max_batch_events:
        raise InvalidEvent("too_large", f"a batch holds {len(batch)} interactions, limit {limits.max_batch_events}")
    results: list[Interaction | InvalidEvent] = []
    for index, element in enumerate(batch):
        try:
            results.append(Interaction.from_dict(element, limits))
        except InvalidEvent as exc:
            results.append(InvalidEvent(exc.reason, f"batch element {index}: {exc.message}"))
    return results


def parse_item_meta(raw: bytes | str | None, limits: Limits = LIMITS) -> ItemMeta:
    """Validate one catalogue record exactly as received from Kafka; raises only :class:`InvalidEvent`."""
    return ItemMeta.from_dict(_load_json(raw, limits), limits)


def parse_ts(value: Any, limits: Limits = LIMITS) -> int:
    """An ISO-8601 string or epoch seconds → integer epoch milliseconds (UTC), within the limits."""
    if isinstance(value, str):
        if len(value) > 64:
            raise InvalidEvent("bad_timestamp", f"field 'ts' is not a timestamp ({len(value)} characters)")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent("bad_timestamp", f"field 'ts' is not an ISO-8601 timestamp: {value[:64]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        try:
            ts_ms = round(moment.timestamp() * 1000)
        except (OverflowError, ValueError, OSError):
            raise InvalidEvent("bad_timestamp", f"field 'ts' is out of range: {value[:64]!r}") from None
    elif _is_number(value):
        if not _finite(value) or abs(value) > 1e15:
            raise InvalidEvent("bad_timestamp", f"field 'ts' is out of range: {value!r}")
        ts_ms = round(value * 1000)
    else:
        raise InvalidEvent(
            "wrong_type", f"field 'ts' must be an ISO-8601 string or epoch seconds, got {_json_type(value)}"
        )
    if not limits.min_ts_ms <= ts_ms < limits.max_ts_ms:
        raise InvalidEvent(
            "bad_timestamp",
            f"field 'ts' {format_ts(ts_ms) if abs(ts_ms) < 2.5e14 else ts_ms} is outside "
            f"[{format_ts(limits.min_ts_ms)}, {format_ts(limits.max_ts_ms)})",
        )
    return ts_ms


def format_ts(ts_ms: int) -> str:
    """Integer epoch milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (exactly invertible by :func:`parse_ts`)."""
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}Z"


def _load_json(raw: bytes | str | None, limits: Limits, max_bytes: int | None = None) -> Any:
    if raw is None:
        raise _null_value()
    max_bytes = max_bytes or limits.max_payload_bytes
    size = len(raw)  # bytes for bytes, characters (a lower bound on UTF-8 bytes) for str
    if size > max_bytes:
        raise InvalidEvent("too_large", f"payload is {size} bytes, the limit is {max_bytes}")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent("not_json", f"payload is not UTF-8 text (byte {exc.start})") from None
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidEvent("too_large", f"payload is over {max_bytes} bytes")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidEvent):
            raise
        raise InvalidEvent("not_json", f"payload is not JSON: {str(exc)[:120]}") from None


def _null_value() -> InvalidEvent:
    """A Kafka message without a value: a tombstone, or a producer that sent none."""
    return InvalidEvent("not_json", "the message has no value (null)")


def _reject_constant(name: str) -> Any:
    raise InvalidEvent("not_json", f"payload contains {name}, which is not valid JSON")


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidEvent("missing_field", f"field {name!r} is required")
    return obj[name]


def _required_id(obj: dict[str, Any], name: str, limits: Limits) -> str:
    value = _id_value(_required(obj, name), name, limits)
    if not value:
        raise InvalidEvent("missing_field", f"field {name!r} must not be empty")
    return value


def _optional_id(obj: dict[str, Any], name: str, limits: Limits) -> str | None:
    value = obj.get(name)
    return None if value is None else _id_value(value, name, limits)


def _id_value(value: Any, name: str, limits: Limits) -> str:
    """Ids are strings; integers are accepted (many catalogues use them) and normalised to their decimal text."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {_json_type(value)}")
    if len(value) > limits.max_id_chars:
        raise InvalidEvent("string_too_long", f"field {name!r} has {len(value)} characters, limit {limits.max_id_chars}")
    return value


def _optional_str(obj: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {_json_type(value)}")
    if len(value) > max_chars:
        raise InvalidEvent("string_too_long", f"field {name!r} has {len(value)} characters, limit {max_chars}")
    return value


def _weight(obj: dict[str, Any], limits: Limits) -> float:
    value = obj.get("weight", 1.0)
    if value is None:
        return 1.0
    if not _is_number(value):
        raise InvalidEvent("wrong_type", f"field 'weight' must be a number, got {_json_type(value)}")
    if not _finite(value) or value < 0 or value > limits.max_weight:
        raise InvalidEvent("bad_weight", f"field 'weight' must be finite and in [0, {limits.max_weight:g}], got {value!r}")
    return float(value)


def _attributes(value: Any, limits: Limits) -> dict[str, str | int | float | bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"field 'attributes' must be an object, got {_json_type(value)}")
    if len(value) > limits.max_attributes:
        raise InvalidEvent("too_large", f"field 'attributes' has {len(value)} entries, limit {limits.max_attributes}")
    out: dict[str, str | int | float | bool] = {}
    for key, item in value.items():
        if len(key) > limits.max_attribute_chars:
            raise InvalidEvent("string_too_long", f"an attribute name has {len(key)} characters")
        if isinstance(item, str):
            if len(item) > limits.max_attribute_chars:
                raise InvalidEvent("string_too_long", f"attribute {key[:40]!r} has {len(item)} characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidEvent("wrong_type", f"attribute {key[:40]!r} must be finite")
        elif not isinstance(item, (bool, int)):
            raise InvalidEvent(
                "wrong_type", f"attribute {key[:40]!r} must be a string, number or boolean, got {_json_type(item)}"
            )
        out[key] = item
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: int | float) -> bool:
    """``math.isfinite`` that also accepts integers too large for a float (JSON allows them)."""
    return isinstance(value, int) or math.isfinite(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
