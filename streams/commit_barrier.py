"""Faust's pre-commit flush, made complete: no offset is committed before the table writes made for it are sent.

Table (changelog) writes wait in Faust's ``ProducerBuffer`` until its background task hands them to the Kafka
producer. Before committing offsets, Faust flushes that buffer, but faust-streaming 0.15's ``flush`` returns as
soon as 0.1 s pass without a message being sent, even with messages still queued, and then only waits for what
the Kafka producer already holds. An offset could thus be committed while the state it produced was still in the
buffer; a crash then would lose that state while the events that made it are never delivered again. This module
replaces ``flush`` with one that waits until every message put before the flush has been handed on, and stops
the worker (a crash, which recovery replays exactly) if the buffer makes no progress for a long time instead of
letting the commit wait forever.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faust.transport.producer import ProducerBuffer

from .delivery import DeliveryFailure, exit_on

__all__ = ["BUFFER_MESSAGES", "NO_PROGRESS_S", "install"]

# Table writes queue here between commits; at Faust's default bound (100 messages) the stream stalls on every
# flush ("producer buffer full"). A larger bound lets changelog writes batch up.
BUFFER_MESSAGES = 10_000
NO_PROGRESS_S = 120.0  # a buffer that hands on nothing for this long while a flush waits is broken

_original_flush = ProducerBuffer.flush
_original_put = ProducerBuffer.put
_original_send_pending = ProducerBuffer._send_pending


def _put(self: Any, fut: Any) -> None:
    self._trail_put = getattr(self, "_trail_put", 0) + 1
    _original_put(self, fut)


async def _send_pending(self: Any, fut: Any) -> None:
    await _original_send_pending(self, fut)
    self._trail_sent = getattr(self, "_trail_sent", 0) + 1


async def _flush(self: Any) -> None:
    """Wait until every message put before this call has been handed to the Kafka producer."""
    target = getattr(self, "_trail_put", 0)
    sent = getattr(self, "_trail_sent", 0)
    progress_at = time.monotonic()
    while getattr(self, "_trail_sent", 0) < target:
        if self.state != "running" or self.should_stop:
            await _original_flush(self)  # stopping: Faust's own behaviour
            return
        now_sent = getattr(self, "_trail_sent", 0)  # unset until the buffer hands on its first message
        if now_sent != sent:
            sent, progress_at = now_sent, time.monotonic()
        elif time.monotonic() - progress_at > NO_PROGRESS_S:
            exit_on(DeliveryFailure(f"Faust's producer buffer handed on no message for {NO_PROGRESS_S:.0f} s "
                                    f"with {target - sent} still queued before a commit"))
        await asyncio.sleep(0.001)


def install() -> None:
    ProducerBuffer.max_messages = BUFFER_MESSAGES
    ProducerBuffer.put = _put  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush  # type: ignore[method-assign]
