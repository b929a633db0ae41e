"""No write goes unnoticed: a Faust sensor that stops the worker when the broker refuses one of its writes.

Faust sends table changelog writes (and ``topic.send`` without waiting) in the background; when the broker
rejects one for good (after the producer's own retries of retriable errors), Faust only logs a warning and the
exception sits in a future nobody reads. The worker then goes on with state that is not durable, or silently
loses a report the merger waits for. This sensor turns that into an immediate exit with one clear error line, so that
``trail run`` (or a supervisor) sees a failed worker instead of one that looks healthy and publishes nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from faust.sensors import Sensor

from trail.errors import TrailError

__all__ = ["DeliveryFailure", "DeliveryWatch", "EXIT_CODE", "exit_on"]

log = logging.getLogger("trail.worker")

EXIT_CODE = 3  # the worker's exit status after a write the broker refused


class DeliveryFailure(TrailError, RuntimeError):
    """The broker refused a write the worker needs (state changelog, report, published list, DLQ entry)."""


class DeliveryWatch(Sensor):  # type: ignore[misc]
    """Counts failed writes per topic; the first failure ends the worker."""

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
        if self.app is not None and self.app.should_stop:
            log.warning("%s (while stopping)", error)
            return
        exit_on(error)


def exit_on(error: DeliveryFailure) -> None:
    """Log, then end the process at once. A graceful stop would still commit offsets (and deliver later writes)
    past the failed one, breaking the rule that recovered state is a prefix of what was written; an immediate exit
    is a crash, which recovery replays exactly."""
    log.critical("%s", error)
    logging.shutdown()
    os._exit(EXIT_CODE)
