"""The worker's web views (Faust's web server, ``TRAIL_WEB_PORT``) and its periodic checks."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import faust

from serving.backend import Backend

from .config import WorkerConfig
from .delivery import DeliveryWatch
from .metrics import Metrics
from .progress import Progress
from .topics import WorkerTopics

__all__ = ["register_timers", "register_views"]

log = logging.getLogger("trail.worker")

PAGE = Path(__file__).with_name("page.html")


def register_views(app: faust.App, topics: WorkerTopics, metrics: Metrics, progress: Progress,
                   backend: Backend) -> None:
    """``/`` the live page, ``/trending`` its JSON, ``/health``, ``/metrics`` (Prometheus text)."""
    page = PAGE.read_text(encoding="utf-8")

    @app.page("/")
    async def page_view(web: Any, request: Any) -> Any:
        return web.html(page)

    @app.page("/trending")
    async def trending_view(web: Any, request: Any) -> Any:
        """The last published record (the JSON behind the page); ``{"window": null, "items": []}`` before one."""
        return web.json(topics.merger_state.get("latest") or {"window": None, "items": []})

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        stalled = [f"{tp.topic}[{tp.partition}]" for tp in progress.stalled]
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing and not stalled
        return web.json({"status": "ok", "ready": ready, "stalled": stalled, "windows_published": metrics.published,
                         "scorer": backend.info.name, "events_per_second": round(metrics.events_per_second, 1)})

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.text(metrics.prometheus(backend.info), content_type="text/plain; version=0.0.4")


def register_timers(app: faust.App, config: WorkerConfig, topics: WorkerTopics, metrics: Metrics,
                    progress: Progress, delivery: DeliveryWatch) -> None:
    """Events/s samples, the stall check behind ``/health``, and in live mode the wall-clock ticks."""

    @app.timer(1.0)
    async def sample_rates() -> None:
        metrics.sample()

    @app.timer(5.0)
    async def check_progress() -> None:
        """Streams with messages waiting that do not move make the worker not ready (see streams/progress.py)."""
        delivery.check_sender()
        assigned = [tp for tp in app.consumer.assignment() if not tp.topic.endswith("-changelog")
                    and "__assignor" not in tp.topic]
        if not assigned or not app.tables.recovery.completed.is_set():
            return
        try:
            ends = await asyncio.wait_for(app.consumer.highwaters(*assigned), timeout=5.0)
        except (asyncio.TimeoutError, Exception) as exc:  # the broker may be away for a moment: check again later
            log.debug("progress check skipped: %r", exc)
            return
        stalled = progress.check(ends)
        if stalled:
            log.warning("streams not moving for %.0f s with messages waiting: %s", config.stall_after_s,
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled))

    if config.close_on_wall_clock:

        @app.timer(1.0)
        async def send_ticks() -> None:
            """Each worker ticks its own partitions, in the partition's context (a co-partitioned topic)."""
            now_ms = int(time.time() * 1000)
            for tp in app.assignor.assigned_actives():
                if tp.topic == config.topics.interactions:
                    await topics.ticks.send(value={"now_ms": now_ms}, partition=tp.partition)
