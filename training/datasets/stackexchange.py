"""Stack Exchange data dump (``Posts.xml``, ``Votes.xml``, ``Comments.xml``, optionally gzipped).

item = a question. Everything that happens to a question or to one of its answers rolls up to the question:
- an answer → ``answer`` at the answer's CreationDate, by its OwnerUserId;
- a vote on the question or an answer → ``vote`` (VoteTypeId 1 accept, 2 up, 3 down) or ``like`` (5 favourite)
  at the vote's CreationDate (the dump gives days only); moderation votes (close, delete, spam, edits, ...) are
  not interest in the question and are dropped;
- a comment on the question or an answer → ``comment`` at its CreationDate, by its UserId.
Votes and comments on posts missing from Posts.xml (deleted) are dropped. The title is the question's Title;
the category is its first tag; all tags and the creation time go into the attributes.

Rows are read with ``iterparse`` and cleared as they go; only the answer → question map is held in memory
(two integers per answer). The three streams are merged in event time by :func:`sorted_by_time`.
"""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import IO, Iterator

from trail.events import Interaction, ItemMeta

from .base import DatasetError
from .ordering import sorted_by_time

__all__ = ["StackExchange", "VOTE_EVENTS"]

VOTE_EVENTS: dict[str, str] = {"1": "vote", "2": "vote", "3": "vote", "5": "like"}
_TAG = re.compile(r"<([^<>]+)>")


@dataclass
class StackExchange:
    """Adapter for a folder holding one site's dump files."""

    folder: Path
    name: str = "stackexchange"
    max_in_memory: int = 500_000

    def items(self) -> Iterator[ItemMeta]:
        for row in self._rows("Posts"):
            if row.get("PostTypeId") != "1":
                continue
            tags = _TAG.findall(row.get("Tags", "")) or row.get("Tags", "").strip("|").split("|")
            tags = [tag for tag in tags if tag]
            yield ItemMeta(
                item_id=row["Id"],
                title=" ".join(row.get("Title", "").split())[:1024],
                category=tags[0] if tags else None,
                attributes={"tags": ",".join(tags)[:1024], "created": row.get("CreationDate", "")},
            )

    def interactions(self) -> Iterator[Interaction]:
        question_of = self._question_map()
        return sorted_by_time(
            chain(self._answers(question_of), self._votes(question_of), self._comments(question_of)),
            max_in_memory=self.max_in_memory,
        )

    def _question_map(self) -> dict[str, str]:
        """post id → its question id (a question maps to itself)."""
        question_of: dict[str, str] = {}
        for row in self._rows("Posts"):
            kind = row.get("PostTypeId")
            if kind == "1":
                question_of[row["Id"]] = row["Id"]
            elif kind == "2" and row.get("ParentId"):
                question_of[row["Id"]] = row["ParentId"]
        # an answer whose question is missing from the dump has nothing to roll up to
        return {post: question for post, question in question_of.items() if question in question_of}

    def _answers(self, question_of: dict[str, str]) -> Iterator[Interaction]:
        for row in self._rows("Posts"):
            if row.get("PostTypeId") == "2" and row["Id"] in question_of:
                yield Interaction(question_of[row["Id"]], _ts_ms(row, self.folder), "answer",
                                  row.get("OwnerUserId"), 1.0, f"a{row['Id']}")

    def _votes(self, question_of: dict[str, str]) -> Iterator[Interaction]:
        for row in self._rows("Votes"):
            event_type = VOTE_EVENTS.get(row.get("VoteTypeId", ""))
            question = question_of.get(row.get("PostId", ""))
            if event_type and question:
                yield Interaction(question, _ts_ms(row, self.folder), event_type, row.get("UserId"), 1.0,
                                  f"v{row['Id']}")

    def _comments(self, question_of: dict[str, str]) -> Iterator[Interaction]:
        for row in self._rows("Comments"):
            question = question_of.get(row.get("PostId", ""))
            if question:
                yield Interaction(question, _ts_ms(row, self.folder), "comment", row.get("UserId"), 1.0,
                                  f"c{row['Id']}")

    def _rows(self, table: str) -> Iterator[dict[str, str]]:
        with self._open(table) as handle:
            try:
                for _, element in ET.iterparse(handle, events=("end",)):
                    if element.tag == "row":
                        yield dict(element.attrib)
                    element.clear()
            except ET.ParseError as exc:
                raise DatasetError(f"{self.folder}/{table}.xml is not well-formed XML: {exc}") from None

    def _open(self, table: str) -> IO[bytes]:
        for name in (f"{table}.xml.gz", f"{table}.xml"):
            path = self.folder / name
            if path.exists():
                return gzip.open(path) if name.endswith(".gz") else open(path, "rb")
        raise DatasetError(f"{self.folder} has no {table}.xml or {table}.xml.gz (a Stack Exchange dump folder?)")


def _ts_ms(row: dict[str, str], folder: Path) -> int:
    try:
        moment = datetime.fromisoformat(row["CreationDate"]).replace(tzinfo=timezone.utc)
    except (KeyError, ValueError):
        raise DatasetError(f"{folder}: row Id={row.get('Id')} has no valid CreationDate") from None
    return round(moment.timestamp() * 1000)
