"""Holes in a partition's offsets, read back from the broker before the worker goes on.

faust-streaming 0.15.3 now and then hands the ingest agent a partition's messages with some left out: seen
after a worker recovered from a long changelog (``tests/test_stream_worker.py``, the legacy-state test lost one
to 73 consecutive offsets of one partition in 6 of 8 runs; the agent never received them, yet Faust acknowledged
past them, so no restart would deliver them again). The same runs also delivered a message twice; duplicates the
worker's positions already drop (``PartitionClock.off``). A hole is the other half: when a partition's next
message is not the one after the last, the messages in between are read straight from the broker (an assigned
consumer without a group: it commits nothing) and processed first, in order. An offset the broker has no record
for (a transaction marker, a compacted or expired record) reads as nothing and costs one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

from .settings import KafkaSettings

__all__ = ["HoleFiller", "ReadBackEvent", "ReadBackMessage"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0  # a hole the broker does not return within this is reported and left (the worker goes on)


@dataclass(frozen=True)
class ReadBackMessage:
    """The parts of a Faust ``Message`` the ingest agent reads."""

    topic: str
    partition: int
    offset: int
    tp: Hashable


@dataclass(frozen=True)
class ReadBackEvent:
    """A message read back from the broker, shaped like the Faust event it should have been."""

    message: ReadBackMessage
    key: bytes | None
    value: bytes


@dataclass
class HoleFiller:
    """Per topic partition, the offset expected next; a message beyond it has the ones in between read back."""

    settings: KafkaSettings
    expected: dict[Hashable, int]
    holes: int = 0  # holes found
    read_back: int = 0  # messages read back into them
    unfilled: int = 0  # offsets of holes the broker did not return in time

    @classmethod
    def for_settings(cls, settings: KafkaSettings) -> "HoleFiller":
        return cls(settings, {})

    def forget(self) -> None:
        """After a rebalance the partitions may come back at another offset: no hole can be told from that."""
        self.expected.clear()

    async def fill(self, events: Sequence[Any]) -> list[Any]:
        """``events`` with every hole in a partition's offsets filled, in place, by the messages read back."""
        filled: list[Any] = []
        for event in events:
            message = event.message
            expected = self.expected.get(message.tp)
            if expected is not None and message.offset > expected:
                self.holes += 1
                missing = await asyncio.get_running_loop().run_in_executor(
                    None, self._read, message.topic, message.partition, expected, message.offset)
                log.warning("%s[%d]: offsets %d..%d were not delivered; read %d back from the broker",
                            message.topic, message.partition, expected, message.offset - 1, len(missing))
                filled.extend(ReadBackEvent(ReadBackMessage(message.topic, message.partition, offset, message.tp),
                                            key, value) for offset, key, value in missing)
                self.read_back += len(missing)
            if expected is None or message.offset >= expected:  # a duplicate does not move the expectation back
                self.expected[message.tp] = message.offset + 1
            filled.append(event)
        return filled

    def _read(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, bytes | None, bytes]]:
        """The records at offsets ``start`` to ``end - 1`` (blocking: runs in a thread)."""
        from kafka import KafkaConsumer, TopicPartition

        from .kafka_io import connect_client

        tp = TopicPartition(topic, partition)
        consumer = connect_client(KafkaConsumer, self.settings, group_id=None, enable_auto_commit=False)
        records: list[tuple[int, bytes | None, bytes]] = []
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + READ_TIMEOUT_S
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    self.unfilled += end - consumer.position(tp)
                    log.error("%s[%d]: offsets %d..%d not read back within %.0f s; going on without them", topic,
                              partition, consumer.position(tp), end - 1, READ_TIMEOUT_S)
                    break
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend((r.offset, r.key, r.value) for r in batch if start <= r.offset < end)
        finally:
            consumer.close()
        return records
