"""The root of every error TRAIL reports to a user as one line (bad input, a bad setting, a service that is down).

Anything else is a bug and keeps its traceback. ``trail_cli`` catches :class:`TrailError` (plus the Kafka client's
own errors and missing or unreadable files); each module raises a subclass that says what went wrong. Subclasses
keep their historical builtin base too (``ValueError`` for bad input, ``RuntimeError`` for an unavailable part), so
callers that caught those still do.
"""

from __future__ import annotations

__all__ = ["Cancelled", "ConfigError", "TrailError"]


class TrailError(Exception):
    """An error with a message meant for the user."""


class ConfigError(TrailError, ValueError):
    """A setting, a command-line argument or an environment variable that cannot be used as given."""


class Cancelled(TrailError):
    """Work given up because its process is stopping (e.g. a window's merge when the worker gets SIGTERM): nothing
    of it was published, so the next start does it again."""
