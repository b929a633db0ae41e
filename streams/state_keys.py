"""The key layout of the worker's ``state`` table, defined once.

Every key starts with its kind and the partition that owns it, so all of a partition's keys go to the same
changelog partition, in order:

- ``o/<partition>/<item>``: the item's open-window counts and the last source offset applied to them;
- ``b/<partition>/<bucket>``: the River trend state of the items hashed to that bucket (``{item: state}``), written
  when a window closes. One write per bucket instead of one per item: a close of 100,000 active items writes
  :data:`TREND_BUCKETS` values, not 100,000;
- ``t/<partition>/<item>``: one item's trend state, as workers wrote it before buckets (read, then replaced by its
  bucket at the next close);
- ``m/<partition>/<item>``: the catalogue entry (title, category);
- ``c/<partition>``: the partition clock.
"""

from __future__ import annotations

import zlib

__all__ = ["TREND_BUCKETS", "clock_key", "legacy_trend_key", "meta_key", "open_key", "parse_key", "trend_bucket",
           "trend_bucket_key"]

# Fixed for the life of a state table (an item's bucket must not move). 1,024 keeps a bucket of a partition at
# the 1,000,000-item limit (TRAIL_MAX_ITEMS) near 600 KB, under Kafka's default 1 MB message size.
TREND_BUCKETS = 1024


def open_key(partition: int, item_id: str) -> str:
    return f"o/{partition}/{item_id}"


def meta_key(partition: int, item_id: str) -> str:
    return f"m/{partition}/{item_id}"


def clock_key(partition: int) -> str:
    return f"c/{partition}"


def legacy_trend_key(partition: int, item_id: str) -> str:
    return f"t/{partition}/{item_id}"


def trend_bucket(item_id: str) -> int:
    """The bucket of an item's trend state: stable across processes and Python versions (not ``hash``).

    >>> trend_bucket("85123A") == trend_bucket("85123A") and 0 <= trend_bucket("85123A") < TREND_BUCKETS
    True
    """
    return zlib.crc32(item_id.encode("utf-8")) % TREND_BUCKETS


def trend_bucket_key(partition: int, bucket: int) -> str:
    return f"b/{partition}/{bucket}"


def parse_key(key: str) -> tuple[str, str, str]:
    """``(kind, partition, rest)``: ``rest`` is the item id (``o``, ``t``, ``m``), the bucket (``b``) or empty.

    >>> parse_key("o/3/85123A/x"), parse_key("c/0")
    (('o', '3', '85123A/x'), ('c', '0', ''))
    """
    kind, _, rest = key.partition("/")
    owner, _, name = rest.partition("/")
    return kind, owner, name
