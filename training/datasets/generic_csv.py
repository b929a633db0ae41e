"""Any CSV of interactions, given a mapping from TRAIL's fields to the file's column names.

``trail replay csv --path events.csv --map item_id=sku,ts=time,user_id=customer,title=name`` reads one row per
interaction. ``item_id`` and ``ts`` are required; ``ts`` is ISO-8601 or epoch seconds (as on the topic). Items
are the distinct item ids, titled and categorised from the first row that has those columns filled. Rows that do
not validate stop the read with the file, line and reason: a half-read dataset is worse than none.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Mapping

from trail.events import InvalidEvent, Interaction, ItemMeta

from .base import DatasetError, open_text
from .ordering import sorted_by_time

__all__ = ["GenericCsv", "parse_mapping"]

FIELDS = ("item_id", "ts", "event_type", "user_id", "weight", "event_id", "title", "category", "price")


def parse_mapping(text: str) -> dict[str, str]:
    """``item_id=sku,ts=time`` → ``{"item_id": "sku", "ts": "time"}``, refusing unknown TRAIL fields."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, column = part.partition("=")
        if not sep or not column:
            raise DatasetError(f"column mapping entry {part!r} is not FIELD=COLUMN")
        if key not in FIELDS:
            raise DatasetError(f"column mapping names unknown field {key!r}; fields are {', '.join(FIELDS)}")
        mapping[key] = column
    return mapping


@dataclass
class GenericCsv:
    path: Path
    mapping: Mapping[str, str] = field(default_factory=dict)
    name: str = "csv"
    delimiter: str = ","
    max_in_memory: int = 500_000

    def __post_init__(self) -> None:
        for required in ("item_id", "ts"):
            if required not in self.mapping:
                raise DatasetError(f"the column mapping must name a column for {required!r}")

    def items(self) -> Iterator[ItemMeta]:
        seen: dict[str, ItemMeta] = {}
        for row, _ in self._rows():
            item_id = row[self.mapping["item_id"]]
            known = seen.get(item_id)
            title = self._cell(row, "title") or (known.title if known else "")
            category = self._cell(row, "category") or (known.category if known else None)
            price_text = self._cell(row, "price")
            price = known.price if known else None
            if price is None and price_text:
                try:
                    price = float(price_text)
                except ValueError:
                    price = None
            seen[item_id] = ItemMeta(item_id, title=title, category=category, price=price)
        for item_id in sorted(seen):
            yield seen[item_id]

    def interactions(self) -> Iterator[Interaction]:
        return sorted_by_time(self._events(), max_in_memory=self.max_in_memory)

    def _events(self) -> Iterator[Interaction]:
        for row, line_number in self._rows():
            record: dict[str, object] = {}
            for key in ("item_id", "ts", "event_type", "user_id", "event_id", "weight"):
                value = self._cell(row, key)
                if value:
                    record[key] = value
            ts = record.get("ts")
            if isinstance(ts, str) and _is_number(ts):
                record["ts"] = float(ts)
            if "weight" in record:
                try:
                    record["weight"] = float(record["weight"])  # type: ignore[arg-type]
                except ValueError:
                    raise DatasetError(f"{self.path}:{line_number}: weight {record['weight']!r} is not a number") from None
            try:
                yield Interaction.from_dict(record)
            except InvalidEvent as exc:
                raise DatasetError(f"{self.path}:{line_number}: {exc}") from None

    def _cell(self, row: dict[str, str], key: str) -> str:
        column = self.mapping.get(key)
        return (row.get(column) or "").strip() if column else ""

    def _rows(self) -> Iterator[tuple[dict[str, str], int]]:
        with self._open() as handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            missing = [c for c in self.mapping.values() if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{self.path}: no column(s) {', '.join(missing)}; the file has {reader.fieldnames}")
            for line_number, row in enumerate(reader, start=2):
                yield row, line_number

    def _open(self) -> IO[str]:
        return open_text(self.path, "CSV file")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
