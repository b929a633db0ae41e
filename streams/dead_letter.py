"""Dead-letter entries: what was refused, why, and where it came from (``TRAIL_TOPIC_DLQ``)."""

from __future__ import annotations

import base64
import time
from typing import Any

import faust

from trail.events import InvalidEvent

__all__ = ["dead_letter", "dead_letter_raw"]


async def dead_letter(dlq: faust.TopicT, event: faust.EventT, error: InvalidEvent,
                      batch_index: int | None = None) -> None:
    message = event.message
    value = event.value
    raw = value if isinstance(value, bytes) else b"" if value is None else bytes(str(value), "utf-8")
    await dead_letter_raw(dlq, raw, error, {"topic": message.topic, "partition": message.partition,
                                            "offset": message.offset, "batch_index": batch_index})


async def dead_letter_raw(dlq: faust.TopicT, raw: bytes, error: InvalidEvent, source: dict[str, Any]) -> None:
    await (await dlq.send(value={
        "reason": error.reason,
        "error": error.message,
        "source": source,
        "original_base64": base64.b64encode(raw).decode(),
        "original_text": raw.decode("utf-8", errors="replace")[:4096],
        "rejected_at_ms": int(time.time() * 1000),
    }))  # acknowledged before the clock counts the rejection as done: a redelivered event is not sent again
