"""The published record's contract: ``streams/trending.schema.json`` is generated from :mod:`trail.trending_record`
(and current), and a record the merger publishes parses into the dataclasses and back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from localstack.run import format_record
from serving.baseline import BaselineBackend
from streams.merge import WindowMerger
from trail.trending_record import TrendingRecord, schema_text

from .test_merge import SPEC, _reports

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "streams" / "trending.schema.json"


def test_the_schema_file_is_generated_from_the_record_dataclasses() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), \
        "streams/trending.schema.json is stale: run `python -m trail.trending_record > streams/trending.schema.json`"


def test_a_published_record_round_trips_through_the_dataclasses() -> None:
    merger = WindowMerger(2, SPEC, n_candidates=20, top_k=5)
    [record] = [r for report in _reports(100) for r in merger.add(report, BaselineBackend(), BaselineBackend())]
    jsonschema.validate(record, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    wire = json.loads(json.dumps(record))
    parsed = TrendingRecord.from_dict(wire)
    assert parsed.to_dict() == wire
    assert [item.rank for item in parsed.items] == [1, 2, 3, 4, 5]
    assert parsed.items[0].signals.history == tuple(wire["items"][0]["signals"]["history"])
    lines = format_record(parsed).splitlines()
    assert len(lines) == 6 and lines[0].startswith(f"── window #{parsed.window.index}")
