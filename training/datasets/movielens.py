"""MovieLens, in both of its formats (the licence forbids shipping a copy; users bring their own):

- ML-100K: ``u.data`` (tab-separated ``user item rating unix_ts``) + ``u.item`` (pipe-separated, Latin-1:
  ``id|title|release date|video release date|IMDb URL|`` then 19 genre flags; names from ``u.genre`` when present);
- ML-latest / 20M / 25M: ``ratings.csv`` (``userId,movieId,rating,timestamp``) + ``movies.csv``
  (``movieId,title,genres`` with genres joined by ``|``), UTF-8.

item = movie; one rating = one ``rating`` interaction of weight 1 (trending measures attention, not taste; the
rating itself is not an interaction weight). Category = the first genre. Rating files are ordered by user, not
time, so interactions go through :func:`sorted_by_time` (bounded memory, spills to disk).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from trail.events import Interaction, ItemMeta

from .base import DatasetError
from .ordering import sorted_by_time

__all__ = ["ML100K_GENRES", "MovieLens"]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass
class MovieLens:
    """Adapter for a MovieLens folder in either format (detected from the file names)."""

    folder: Path
    name: str = "movielens"
    max_in_memory: int = 500_000

    @property
    def is_100k(self) -> bool:
        if (self.folder / "u.data").exists():
            return True
        if (self.folder / "ratings.csv").exists():
            return False
        raise DatasetError(f"{self.folder} has neither u.data (ML-100K) nor ratings.csv (ML-latest)")

    def items(self) -> Iterator[ItemMeta]:
        return self._items_100k() if self.is_100k else self._items_csv()

    def interactions(self) -> Iterator[Interaction]:
        raw = self._ratings_100k() if self.is_100k else self._ratings_csv()
        return sorted_by_time(raw, max_in_memory=self.max_in_memory)

    def _items_100k(self) -> Iterator[ItemMeta]:
        genres = self._genres_100k()
        path = self._require("u.item")
        with open(path, encoding="latin-1", newline="") as handle:
            for line_number, line in enumerate(handle, start=1):
                fields = line.rstrip("\r\n").split("|")
                if len(fields) < 5:
                    raise DatasetError(f"{path}:{line_number}: expected at least 5 '|'-separated fields")
                flags = fields[5:]
                names = [genres[i] for i, flag in enumerate(flags) if flag == "1" and i < len(genres)]
                yield ItemMeta(fields[0], title=fields[1], category=names[0] if names else None,
                               attributes={"genres": "|".join(names), "release_date": fields[2]})

    def _genres_100k(self) -> tuple[str, ...]:
        path = self.folder / "u.genre"
        if not path.exists():
            return ML100K_GENRES
        with open(path, encoding="latin-1") as handle:
            return tuple(line.split("|")[0] for line in handle if "|" in line)

    def _ratings_100k(self) -> Iterator[Interaction]:
        path = self._require("u.data")
        with open(path, encoding="latin-1") as handle:
            for line_number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 4:
                    raise DatasetError(f"{path}:{line_number}: expected 'user item rating timestamp'")
                user, item, _rating, ts = fields
                yield Interaction(item, _epoch_ms(ts, path, line_number), "rating", user, 1.0, f"{user}:{item}")

    def _items_csv(self) -> Iterator[ItemMeta]:
        path = self._require("movies.csv")
        with open(path, encoding="utf-8", newline="") as handle:
            for row in _dict_rows(path, handle, ("movieId", "title", "genres")):
                genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
                yield ItemMeta(row["movieId"], title=row["title"], category=genres[0] if genres else None,
                               attributes={"genres": "|".join(genres)})

    def _ratings_csv(self) -> Iterator[Interaction]:
        path = self._require("ratings.csv")
        with open(path, encoding="utf-8", newline="") as handle:
            for line_number, row in enumerate(_dict_rows(path, handle, ("userId", "movieId", "timestamp")), start=2):
                yield Interaction(row["movieId"], _epoch_ms(row["timestamp"], path, line_number), "rating",
                                  row["userId"], 1.0, f"{row['userId']}:{row['movieId']}")

    def _require(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            raise DatasetError(f"MovieLens file not found: {path}")
        return path


def _dict_rows(path: Path, handle, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(handle)
    missing = [column for column in required if column not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    yield from reader


def _epoch_ms(text: str, path: Path, line_number: int) -> int:
    try:
        return int(text) * 1000
    except ValueError:
        raise DatasetError(f"{path}:{line_number}: timestamp {text!r} is not integer epoch seconds") from None
