"""No write goes unnoticed: a Faust sensor that stops the worker when the broker refuses one of its writes.

Faust sends table changelog writes (and ``topic.send`` without waiting) in the background; when the broker
rejects one for good (after the producer's own retries of retriable errors), Faust only logs a warning and the
exception sits in a future nobody reads. The worker then goes on with state that is not durable, or silently
loses a report the merger waits for. This sensor turns that into a stop with one clear error line, so that
``trail run`` (or a supervisor) sees a failed worker instead of one that looks healthy and publishes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from faust.sensors import Sensor

__all__ = ["DeliveryFailure", "DeliveryWatch", "HARD_EXIT_CODE"]

log = logging.getLogger("trail.worker")

HARD_EXIT_CODE = 3  # the exit status when the worker has to be ended because a graceful crash did not finish
CRASH_GRACE_S = 15.0  # a crash that has not ended the process by then is made final


class DeliveryFailure(RuntimeError):
    """The broker refused a write the worker needs (state changelog, report, published list, DLQ entry)."""


class DeliveryWatch(Sensor):  # type: ignore[misc]
    """Counts failed writes per topic; the first failure crashes the app."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self.failures = 0
        self.failed_topics: dict[str, str] = {}

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return (topic, keysize + valsize)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        topic, size = state if isinstance(state, tuple) else ("?", 0)
        self.failures += 1
        self.failed_topics[topic] = repr(exc)
        self.fail(DeliveryFailure(f"the broker refused a write of {size} bytes to {topic!r}: {exc!r}; the worker "
                                  "stops rather than continue with state or output that is not durable"))

    def check_sender(self) -> None:
        """aiokafka delivers every write from one background task; should it end (it does on errors it deems
        fatal), every later write would wait forever, silently. Stop instead."""
        producer = getattr(getattr(self.app, "producer", None), "_producer", None)
        task = getattr(getattr(producer, "_sender", None), "_sender_task", None)
        if task is None or not task.done() or self.app.should_stop:
            return
        reason = task.exception() if not task.cancelled() else "cancelled"
        self.failures += 1
        self.fail(DeliveryFailure(f"the Kafka producer's sender task ended ({reason!r}): no write can be "
                                  "delivered any more"))

    def fail(self, error: DeliveryFailure) -> None:
        log.error("%s", error)
        if self.failures == 1 and self.app is not None:
            asyncio.ensure_future(self.app.crash(error))
            _exit_if_still_running(CRASH_GRACE_S)


def _exit_if_still_running(grace_s: float) -> None:
    """A crash flushes the producer on the way out, which can wait on the very write that failed: bound it."""

    def end() -> None:
        log.error("the worker did not stop within %.0f s of a failed write: exiting", grace_s)
        logging.shutdown()
        os._exit(HARD_EXIT_CODE)

    timer = threading.Timer(grace_s, end)
    timer.daemon = True
    timer.start()
