"""Dataset adapters on the real shared files (numbers re-derived here independently) and on MovieLens files
written by the test in the exact upstream formats."""

from __future__ import annotations

import csv
import gzip
import random
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from trail.events import Interaction
from training.datasets import DatasetError, DatasetStats, GenericCsv, MovieLens, OnlineRetail, StackExchange, open_dataset, parse_mapping, sorted_by_time


def _utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.data
def test_online_retail_counts_match_an_independent_reading(datasets_dir: Path) -> None:
    path = datasets_dir / "online_retail" / "online_retail.csv.gz"
    # Independent reading: csv.DictReader on the raw file, each rule written out from the dataset README.
    kept = 0
    codes: set[str] = set()
    first = last = None
    raw_rows = 0
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            raw_rows += 1
            code = row["StockCode"].strip().upper()
            if row["InvoiceNo"].startswith("C") or float(row["Quantity"]) <= 0 or float(row["UnitPrice"]) <= 0:
                continue
            if not (len(code) in (5, 6, 7) and code[:5].isdigit() and code[5:].isalpha() | (code[5:] == "")):
                continue
            kept += 1
            codes.add(code)
            first = first or row["InvoiceDate"]
            last = row["InvoiceDate"]
    stats = DatasetStats.of(OnlineRetail(path))
    print(f"online retail: {raw_rows} raw rows → {stats.interactions} interactions, {stats.items} items, "
          f"{first} → {last}")
    assert raw_rows == 541_909
    assert stats.interactions == kept
    assert stats.items == stats.distinct_items_interacted == len(codes)
    assert stats.first_ts_ms == _utc_ms(first) and stats.last_ts_ms == _utc_ms(last)
    assert (first, last) == ("2010-12-01 08:26:00", "2011-12-09 12:50:00")


@pytest.mark.data
def test_online_retail_titles_categories_and_order(datasets_dir: Path) -> None:
    dataset = OnlineRetail(datasets_dir / "online_retail" / "online_retail.csv.gz")
    items = {item.item_id: item for item in dataset.items()}
    assert items["85123A"].title == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert items["85123A"].category == "HOLDER"
    assert all(item.price and item.price > 0 for item in items.values())
    assert not any(code in items for code in ("POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE", "C2"))
    previous = 0
    for event in dataset.interactions():
        assert event.ts_ms >= previous and event.item_id in items
        previous = event.ts_ms


@pytest.mark.data
def test_stackexchange_rolls_everything_up_to_questions(datasets_dir: Path) -> None:
    folder = datasets_dir / "stackexchange_quantum"

    def rows(table: str) -> list[dict[str, str]]:
        return [dict(e.attrib) for e in ET.parse(gzip.open(folder / f"{table}.xml.gz")).getroot()]

    posts, votes, comments = rows("Posts"), rows("Votes"), rows("Comments")
    questions = {p["Id"] for p in posts if p["PostTypeId"] == "1"}
    parent = {p["Id"]: p["Id"] for p in posts if p["PostTypeId"] == "1"}
    parent.update({p["Id"]: p["ParentId"] for p in posts if p["PostTypeId"] == "2" and p.get("ParentId") in questions})
    answers = sum(1 for p in posts if p["PostTypeId"] == "2" and p["Id"] in parent)
    interest_votes = sum(1 for v in votes if v["VoteTypeId"] in {"1", "2", "3", "5"} and v["PostId"] in parent)
    kept_comments = sum(1 for c in comments if c["PostId"] in parent)
    all_times = sorted(
        [p["CreationDate"] for p in posts if p["PostTypeId"] == "2" and p["Id"] in parent]
        + [v["CreationDate"] for v in votes if v["VoteTypeId"] in {"1", "2", "3", "5"} and v["PostId"] in parent]
        + [c["CreationDate"] for c in comments if c["PostId"] in parent]
    )

    dataset = StackExchange(folder, max_in_memory=4_000)  # small runs: the spill-to-disk merge is exercised
    stats = DatasetStats.of(dataset)
    print(f"stackexchange: {len(posts)} posts, {len(questions)} questions; {answers} answers + {interest_votes} votes "
          f"+ {kept_comments} comments = {stats.interactions} interactions")
    assert len(posts) == 1_986 and len(votes) == 12_560
    assert stats.items == len(questions)
    assert stats.interactions == answers + interest_votes + kept_comments
    assert stats.first_ts_ms == _utc_ms(all_times[0]) and stats.last_ts_ms == _utc_ms(all_times[-1])
    times = [e.ts_ms for e in dataset.interactions()]
    assert times == sorted(times)
    assert {e.item_id for e in dataset.interactions()} <= questions


def _write_ml100k(folder: Path) -> None:
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t302\t5\t881250900\n")
    genres = ["0"] * 19
    comedy = genres.copy(); comedy[5] = "1"
    crime = genres.copy(); crime[6] = "1"; crime[16] = "1"
    lines = [
        "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|" + "|".join(comedy),
        "302|L.A. Confidential (1997)|01-Jan-1997||http://x|" + "|".join(crime),
        "377|Heavyweights (1994)|01-Jan-1994||http://x|" + "|".join(genres),
        "1|Café Münster (1995)|01-Jan-1995||http://x|" + "|".join(comedy),
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


def test_movielens_100k_format(tmp_path: Path) -> None:
    _write_ml100k(tmp_path)
    dataset = MovieLens(tmp_path)
    items = {item.item_id: item for item in dataset.items()}
    assert items["1"].title == "Café Münster (1995)"  # Latin-1 decoded
    assert items["302"].category == "Crime" and items["302"].attributes["genres"] == "Crime|Thriller"
    assert items["377"].category is None
    events = list(dataset.interactions())
    assert [(e.item_id, e.user_id, e.ts_ms) for e in events] == [
        ("377", "22", 878887116000), ("302", "196", 881250900000), ("242", "196", 881250949000),
        ("302", "186", 891717742000)]
    assert {e.event_type for e in events} == {"rating"}


def test_movielens_csv_format(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
                                         '2,"Jumanji, The (1995)",(no genres listed)\n')
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,1,4.0,964982703\n2,1,5,964982700\n")
    dataset = MovieLens(tmp_path)
    items = list(dataset.items())
    assert [(i.item_id, i.title, i.category) for i in items] == [("1", "Toy Story (1995)", "Adventure"),
                                                                  ("2", "Jumanji, The (1995)", None)]
    assert [(e.item_id, e.ts_ms) for e in dataset.interactions()] == [("1", 964982700000), ("1", 964982703000),
                                                                      ("2", 1112486027000)]


def test_movielens_missing_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="neither u.data"):
        list(MovieLens(tmp_path).items())


def test_generic_csv_with_a_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("sku,when,who,name,kind\nA,2024-01-02T00:00:00Z,u1,Alpha,click\nB,1704067200,u2,Beta,view\n"
                    "A,2024-01-01T12:00:00,u3,,view\n")
    dataset = GenericCsv(path, parse_mapping("item_id=sku,ts=when,user_id=who,title=name,event_type=kind"))
    assert [(i.item_id, i.title) for i in dataset.items()] == [("A", "Alpha"), ("B", "Beta")]
    assert [(e.item_id, e.user_id, e.event_type) for e in dataset.interactions()] == [
        ("B", "u2", "view"), ("A", "u3", "view"), ("A", "u1", "click")]
    path.write_text("sku,when\nA,not-a-time\n")
    with pytest.raises(DatasetError, match=r"events.csv:2: bad_timestamp"):
        list(GenericCsv(path, {"item_id": "sku", "ts": "when"}).interactions())
    with pytest.raises(DatasetError, match="unknown field 'sku_id'"):
        parse_mapping("sku_id=sku")
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset("nope")


def test_external_sort_is_a_stable_sort_whatever_the_run_size() -> None:
    rng = random.Random(7)
    events = [Interaction(f"i{rng.randrange(50)}", 1_000_000_000_000 + rng.randrange(200) * 1000, event_id=str(n))
              for n in range(5_000)]
    expected = sorted(events, key=lambda e: e.ts_ms)  # Python's sort is stable
    for run in (1, 7, 999, 5_000, 100_000):
        assert list(sorted_by_time(events, max_in_memory=run)) == expected
