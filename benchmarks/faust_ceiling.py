"""The Faust ceiling: an agent that does nothing but count messages, on the topic the worker benchmark drains.

``python benchmarks/faust_ceiling.py BOOTSTRAP TOPIC N`` prints ``CEILING <messages/s>`` once it has seen N
messages (timed from the first one) and exits. No Faust-based worker can count faster than this on the same
machine, so ``make bench-stream`` reports it next to the raw consumer and the TRAIL worker: it separates what the
framework costs from what TRAIL's own code costs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

import faust


def main() -> None:
    bootstrap, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = faust.App(
        f"ceiling-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-ceiling-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=10_000,  # the TRAIL worker's consumer settings
        stream_buffer_maxsize=65_536,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")

    @app.agent(source)
    async def count(stream: faust.StreamT) -> None:
        seen, started = 0, 0.0
        async for _ in stream.events():
            if seen == 0:
                started = time.monotonic()
            seen += 1
            if seen >= expected:
                print(f"CEILING {seen / (time.monotonic() - started):.1f}", flush=True)
                os._exit(0)  # a benchmark helper: nothing to flush, no offsets worth committing

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
