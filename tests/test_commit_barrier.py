"""The complete pre-commit flush (streams/commit_barrier.py), on its waiting logic alone: a stand-in buffer whose
counts the test moves, as Faust's ProducerBuffer moves them when it hands messages on."""

from __future__ import annotations

import asyncio

from streams.commit_barrier import _flush


class _Buffer:
    """The attributes ``_flush`` reads: a running buffer with ``put`` messages queued and none handed on yet."""

    state = "running"
    should_stop = False

    def __init__(self, put: int) -> None:
        self._trail_put = put


def test_a_flush_before_the_first_message_is_handed_on_waits_for_every_one() -> None:
    """The soak test's restarted worker crashed here once: a commit flushed the buffer after a put and before the
    buffer had handed on its first message, and the flush read a sent count that did not exist yet
    (AttributeError: 'ProducerBuffer' object has no attribute '_trail_sent')."""

    async def scenario() -> None:
        buffer = _Buffer(put=2)
        flush = asyncio.ensure_future(_flush(buffer))
        await asyncio.sleep(0.02)
        assert not flush.done()  # nothing handed on: still waiting (it raised here before the fix)
        buffer._trail_sent = 1
        await asyncio.sleep(0.02)
        assert not flush.done()
        buffer._trail_sent = 2
        await asyncio.wait_for(flush, timeout=1.0)

    asyncio.run(scenario())
