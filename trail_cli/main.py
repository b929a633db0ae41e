"""``trail VERB ...``: every verb of every stage, with errors reported in one line and no traceback."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

__all__ = ["main"]


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (the usage stays behind ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from localstack import cli as local_cli
    from streams import cli as stream_cli
    from training import cli as training_cli

    parser = _OneLineParser(prog="trail", description="TRAIL: trending items with faithful explanations")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_OneLineParser)
    stream_cli.register(commands)
    local_cli.register(commands)
    training_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("trail: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: one line, no traceback
        if not _expected(exc):
            raise
        print(f"trail {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _expected(exc: Exception) -> bool:
    """Errors that describe bad input or an unavailable service, as opposed to bugs (which keep their traceback):
    TRAIL's own (:class:`trail.errors.TrailError`), the Kafka client's, and a file that is missing or unreadable."""
    from kafka.errors import KafkaError

    from trail.errors import TrailError

    return isinstance(exc, (TrailError, KafkaError, FileNotFoundError, PermissionError))
