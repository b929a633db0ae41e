"""Per-item trend signals, window by window: the one definition shared by the stream workers and training.

Two parts, because some signals belong to one item and some to the whole window:

- :class:`ItemTrend` — one item's online state, built on River (``stats.EWMean``, ``stats.EWVar``,
  ``stats.Mean``, ``time_series.HoltWinters``). It sees only its own item, so it lives with the item's
  partition. ``close(count, distinct_users)`` advances it by one window (zero when the item had no events:
  decay is a signal) and returns its :class:`ItemWindow`.
- :class:`WindowBoard` — what needs every item: rank by count (and its change since the previous window) and the
  category totals. Each partition contributes a :class:`PartitionSummary` (its top-``board_size`` items by count
  and its per-category totals); merging summaries gives exact global ranks for every item in the global top
  ``board_size`` whatever the partitioning (each partition's top-N holds all of its members of the global top-N),
  and exact category totals. Items below the board have ``rank=None``.

:func:`signals_for` joins the two into the :class:`TrendSignals` the model and the explanations use.

State is serialised to plain JSON-able values (numbers, strings, lists) by ``to_state`` / ``from_state``; River's
Rust-backed statistics are stored as their own byte encoding of a few floats (base64), never as pickles, so
nothing a producer could write is ever unpickled.
"""

from __future__ import annotations

import base64
import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from river import stats, time_series

from .trend_config import TrendConfig
from .windows import WindowSpec

__all__ = [
    "ItemTrend",
    "ItemWindow",
    "PartitionSummary",
    "TrendConfig",
    "TrendSignals",
    "WindowBoard",
    "signals_for",
]


@dataclass(slots=True)
class ItemWindow:
    """The item-local signals of one closed window. Treat it as immutable: it is not ``frozen`` only because a
    frozen dataclass costs ~5 µs more to build, paid for every tracked item at every window close."""

    item_id: str
    window_index: int
    count: float
    history: tuple[float, ...]  # the last K window counts, oldest first, ending with ``count``
    previous_count: float
    velocity: float  # TrendRec: interactions per step = this window's count
    acceleration: float  # TrendRec: velocity − previous velocity
    ewm_fast: float
    ewm_slow: float
    momentum: float  # ewm_fast / ewm_slow (1.0 when both are 0)
    zscore: float  # (count − slow mean before this window) / slow std before it; 0 when the std is 0
    long_term_mean: float  # mean count over the windows before this one, since first seen
    level_ratio: float  # (count + 1) / (long_term_mean + 1): growth versus the item's own level
    distinct_users: int
    age_windows: int  # windows since the item was first seen (0 in its first window)
    forecast: float  # HoltWinters one-step forecast of the next window's count, >= 0
    idle_windows: int  # consecutive windows without events, this one included


@dataclass(frozen=True, slots=True)
class TrendSignals:
    """Everything TRAIL knows about an item at the close of a window."""

    item: ItemWindow
    title: str
    category: str | None
    rank: int | None  # 1 = most interactions this window; None = outside the board
    previous_rank: int | None
    category_count: float
    category_previous_count: float
    window_start_ms: int | None = None  # the window's start (event time, UTC); None where unknown
    window_size_ms: int | None = None

    @property
    def item_id(self) -> str:
        return self.item.item_id

    @property
    def rank_change(self) -> int | None:
        """Places climbed since the previous window (negative = fell); None when either rank is unknown."""
        if self.rank is None or self.previous_rank is None:
            return None
        return self.previous_rank - self.rank

    @property
    def category_growth(self) -> float:
        """(category count + 1) / (previous category count + 1)."""
        return (self.category_count + 1.0) / (self.category_previous_count + 1.0)

    def to_dict(self) -> dict[str, Any]:
        item = self.item
        return {
            "item_id": item.item_id, "window_index": item.window_index, "count": item.count,
            "history": list(item.history), "previous_count": item.previous_count, "velocity": item.velocity,
            "acceleration": item.acceleration, "ewm_fast": item.ewm_fast, "ewm_slow": item.ewm_slow,
            "momentum": item.momentum, "zscore": item.zscore, "long_term_mean": item.long_term_mean,
            "level_ratio": item.level_ratio, "distinct_users": item.distinct_users, "age_windows": item.age_windows,
            "forecast": item.forecast, "idle_windows": item.idle_windows, "title": self.title,
            "category": self.category, "rank": self.rank, "previous_rank": self.previous_rank,
            "rank_change": self.rank_change, "category_count": self.category_count,
            "category_previous_count": self.category_previous_count, "category_growth": self.category_growth,
            "window_start_ms": self.window_start_ms, "window_size_ms": self.window_size_ms,
        }


class ItemTrend:
    """One item's online trend state (River estimators), advanced once per closed window."""

    __slots__ = ("config", "_history", "_fast", "_slow", "_slow_var", "_level", "_holt", "_first_window",
                 "_last_window", "_idle")

    def __init__(self, config: TrendConfig, first_window: int) -> None:
        self.config = config
        self._history: list[float] = []
        self._fast = stats.EWMean(fading_factor=config.fast_fading)
        self._slow = stats.EWMean(fading_factor=config.slow_fading)
        self._slow_var = stats.EWVar(fading_factor=config.slow_fading)
        self._level = stats.Mean()
        self._holt = time_series.HoltWinters(alpha=config.holt_alpha, beta=config.holt_beta)
        self._first_window = first_window
        self._last_window = first_window - 1
        self._idle = 0

    @property
    def last_window(self) -> int:
        return self._last_window

    @property
    def evictable(self) -> bool:
        return self._idle >= self.config.evict_after_idle_windows

    def close(self, item_id: str, window_index: int, count: float, distinct_users: int = 0) -> ItemWindow:
        """Advance by one window. Windows must be closed in order, each exactly once (gaps are filled with zeros
        by the caller, see :meth:`catch_up`)."""
        if window_index != self._last_window + 1:
            raise ValueError(f"item {item_id!r}: window {window_index} closed after window {self._last_window}")
        previous = self._history[-1] if self._history else 0.0
        slow_mean_before = self._slow.get() if self._history else 0.0
        slow_std_before = math.sqrt(max(self._slow_var.get(), 0.0)) if self._history else 0.0
        level_before = self._level.get() if self._history else 0.0

        self._fast.update(count)
        self._slow.update(count)
        self._slow_var.update(count)
        self._level.update(count)
        self._holt.learn_one(count)
        self._history.append(count)
        del self._history[: -self.config.history_length]
        self._last_window = window_index
        self._idle = self._idle + 1 if count == 0 else 0

        fast, slow = self._fast.get(), self._slow.get()
        return ItemWindow(
            item_id=item_id,
            window_index=window_index,
            count=count,
            history=tuple(self._history),
            previous_count=previous,
            velocity=count,
            acceleration=count - previous,
            ewm_fast=fast,
            ewm_slow=slow,
            momentum=fast / slow if slow > 0 else 1.0,
            zscore=(count - slow_mean_before) / slow_std_before if slow_std_before > 1e-12 else 0.0,
            long_term_mean=level_before,
            level_ratio=(count + 1.0) / (level_before + 1.0),
            distinct_users=distinct_users,
            age_windows=window_index - self._first_window,
            forecast=self._forecast(),
            idle_windows=self._idle,
        )

    def catch_up(self, item_id: str, window_index: int) -> None:
        """Close every window before ``window_index`` that this item has not seen, with zero counts."""
        for missing in range(self._last_window + 1, window_index):
            self.close(item_id, missing, 0.0)

    def _forecast(self) -> float:
        if len(self._history) < 2:  # HoltWinters needs two points before it can forecast
            return self._history[-1] if self._history else 0.0
        return max(0.0, float(self._holt.forecast(horizon=1)[0]))

    # -- state ---------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able state (River's Rust statistics as their own byte encoding, base64)."""
        holt = self._holt
        return {
            "h": list(self._history),
            "fast": _rust_state(self._fast, "_ewmean"),
            "slow": _rust_state(self._slow, "_ewmean"),
            "var": _rust_state(self._slow_var, "_ewvar"),
            "level": [self._level.n, self._level._mean],
            "holt": {
                "level": list(holt.level) if holt.level is not None else None,
                "trend": list(holt.trend) if holt.trend is not None else None,
                "first": list(holt._first_values),
                "init": holt._initialized,
            },
            "first": self._first_window,
            "last": self._last_window,
            "idle": self._idle,
        }

    @classmethod
    def from_state(cls, config: TrendConfig, state: Mapping[str, Any]) -> "ItemTrend":
        trend = cls(config, int(state["first"]))
        trend._history = [float(x) for x in state["h"]]
        _set_rust_state(trend._fast, "_ewmean", state["fast"])
        _set_rust_state(trend._slow, "_ewmean", state["slow"])
        _set_rust_state(trend._slow_var, "_ewvar", state["var"])
        trend._level.n, trend._level._mean = float(state["level"][0]), float(state["level"][1])
        holt_state = state["holt"]
        holt = trend._holt
        holt._first_values = [float(x) for x in holt_state["first"]]
        holt._initialized = bool(holt_state["init"])
        if holt_state["level"] is not None:
            from river.time_series.holt_winters import AdditiveLevel, Trend

            holt.level = AdditiveLevel(holt.alpha)
            holt.level.extend(float(x) for x in holt_state["level"])
            holt.trend = Trend(holt.beta)
            holt.trend.extend(float(x) for x in holt_state["trend"])
        trend._last_window = int(state["last"])
        trend._idle = int(state["idle"])
        return trend


def _rust_state(statistic: Any, attribute: str) -> str:
    return base64.b64encode(getattr(statistic, attribute).__getstate__()).decode()


def _set_rust_state(statistic: Any, attribute: str, encoded: str) -> None:
    getattr(statistic, attribute).__setstate__(base64.b64decode(encoded))


# -- the window-wide part -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionSummary:
    """One partition's contribution to a closed window: its top items by count and its category totals."""

    window_index: int
    top: tuple[tuple[str, float], ...]  # (item_id, count), at most board_size, count > 0
    category_counts: Mapping[str, float]
    items_tracked: int = 0

    @classmethod
    def of(cls, window_index: int, windows: Iterable[tuple[ItemWindow, str | None]], board_size: int) -> "PartitionSummary":
        """From the partition's closed item windows with each item's category."""
        categories: dict[str, float] = {}
        counted: list[tuple[str, float]] = []
        tracked = 0
        for window, category in windows:
            tracked += 1
            if window.count > 0:
                counted.append((window.item_id, window.count))
                key = category or ""
                categories[key] = categories.get(key, 0.0) + window.count
        top = heapq.nsmallest(board_size, counted, key=_board_order)
        return cls(window_index, tuple(top), categories, tracked)

    def to_dict(self) -> dict[str, Any]:
        return {"window_index": self.window_index, "top": [list(t) for t in self.top],
                "category_counts": dict(self.category_counts), "items_tracked": self.items_tracked}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PartitionSummary":
        return cls(int(data["window_index"]), tuple((str(i), float(c)) for i, c in data["top"]),
                   {str(k): float(v) for k, v in data["category_counts"].items()}, int(data.get("items_tracked", 0)))


def _board_order(entry: tuple[str, float]) -> tuple[float, str]:
    return (-entry[1], entry[0])  # most interactions first; ties by item id, so every run agrees


@dataclass
class WindowBoard:
    """Global ranks and category totals, window after window (state: the previous window's board)."""

    board_size: int = 200
    window_index: int = -1
    ranks: dict[str, int] = field(default_factory=dict)
    previous_ranks: dict[str, int] = field(default_factory=dict)
    category_counts: dict[str, float] = field(default_factory=dict)
    previous_category_counts: dict[str, float] = field(default_factory=dict)

    def close(self, window_index: int, summaries: Sequence[PartitionSummary]) -> None:
        """Merge every partition's summary of ``window_index`` (windows in order; a skipped window means an
        empty one in between)."""
        if window_index <= self.window_index:
            raise ValueError(f"window {window_index} merged after window {self.window_index}")
        if any(s.window_index != window_index for s in summaries):
            raise ValueError(f"summaries of other windows given for window {window_index}")
        merged = heapq.nsmallest(self.board_size, (entry for s in summaries for entry in s.top), key=_board_order)
        categories: dict[str, float] = {}
        for summary in summaries:
            for category, count in summary.category_counts.items():
                categories[category] = categories.get(category, 0.0) + count
        gap = window_index != self.window_index + 1
        self.previous_ranks = {} if gap else self.ranks
        self.previous_category_counts = {} if gap else self.category_counts
        self.ranks = {item_id: position for position, (item_id, _) in enumerate(merged, start=1)}
        self.category_counts = categories
        self.window_index = window_index

    def to_state(self) -> dict[str, Any]:
        return {"board_size": self.board_size, "window_index": self.window_index, "ranks": self.ranks,
                "previous_ranks": self.previous_ranks, "category_counts": self.category_counts,
                "previous_category_counts": self.previous_category_counts}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "WindowBoard":
        return cls(int(state["board_size"]), int(state["window_index"]),
                   {str(k): int(v) for k, v in state["ranks"].items()},
                   {str(k): int(v) for k, v in state["previous_ranks"].items()},
                   {str(k): float(v) for k, v in state["category_counts"].items()},
                   {str(k): float(v) for k, v in state["previous_category_counts"].items()})


def signals_for(window: ItemWindow, board: WindowBoard, title: str = "", category: str | None = None,
                spec: WindowSpec | None = None) -> TrendSignals:
    """The full signals of an item whose window the board has merged (``spec``: the windows, for the calendar)."""
    if board.window_index != window.window_index:
        raise ValueError(f"board is at window {board.window_index}, item {window.item_id!r} at {window.window_index}")
    key = category or ""
    return TrendSignals(
        item=window,
        title=title,
        category=category,
        rank=board.ranks.get(window.item_id),
        previous_rank=board.previous_ranks.get(window.item_id),
        category_count=board.category_counts.get(key, 0.0),
        category_previous_count=board.previous_category_counts.get(key, 0.0),
        window_start_ms=None if spec is None else spec.start_of(window.window_index),
        window_size_ms=None if spec is None else spec.size_ms,
    )
