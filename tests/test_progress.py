"""/health's stall detection: waiting messages that do not move for long are a stall; history is not."""

from streams.progress import Progress


def test_waiting_messages_that_do_not_move_are_a_stall_and_history_is_not() -> None:
    progress = Progress(stall_after_s=30)
    assert progress.check({"a": 100, "b": 5}, now=0.0) == ()  # first sight after a restart: nothing waits
    assert progress.check({"a": 100, "b": 5}, now=1_000.0) == ()  # idle, nothing new
    assert progress.check({"a": 120, "b": 5}, now=1_001.0) == ()  # new messages...
    progress.processed("a", 110, now=1_010.0)
    assert progress.check({"a": 120, "b": 5}, now=1_035.0) == ()  # ...moving
    assert progress.check({"a": 120, "b": 5}, now=1_041.0) == ("a",)  # ...then standing still
    progress.busy_since = 1_040.0  # the merger scoring a window counts as moving
    assert progress.check({"a": 120, "b": 5}, now=1_050.0) == ()
    progress.busy_since = None
    progress.processed("a", 119, now=1_060.0)
    assert progress.check({"a": 120, "b": 5}, now=1_200.0) == ()
