"""The merge agent: partition reports from the summaries topic (one partition, so one worker merges) → when every
partition has reported a window: global ranks, candidates, scores, explanations, checks → one record on
``trending-with-explanations``. Its durable state is :class:`streams.merge.MergerStore`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Callable

import faust

from serving.backend import Backend, never
from trail.errors import Cancelled
from trail.trending_record import TrendingRecord

from .merge import MergerStore, PartitionReport, WindowMerger
from .metrics import Metrics
from .progress import Progress
from .topics import WorkerTopics

__all__ = ["MergeAgent"]

log = logging.getLogger("trail.worker")


class MergeAgent:
    def __init__(self, topics: WorkerTopics, merger: WindowMerger, backend: Backend, fallback: Backend,
                 metrics: Metrics, progress: Progress, stopping: Callable[[], bool] = never) -> None:
        """``stopping``: True once the worker is shutting down (read from the scoring thread): a merge in flight
        then gives up between its steps instead of holding the stop up for its remaining explanation rounds."""
        self.topics, self.merger, self.backend, self.fallback = topics, merger, backend, fallback
        self.metrics, self.progress, self.stopping = metrics, progress, stopping
        self.store = MergerStore(topics.merger_state)
        self.loaded = False  # re-read from the table after any rebalance (the partition may have moved)
        self.scoring = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="trail-scoring")

    def forget(self) -> None:
        self.loaded = False

    async def run(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            if not self.loaded:
                self.store.load(self.merger)
                self.loaded = True
            report = PartitionReport.from_dict(event.value)
            if self.merger.accept(report):
                self.store.save_report(report)
            # model calls take seconds: off the event loop, so ingestion and the web views keep going meanwhile
            self.progress.busy_since = time.monotonic()
            try:
                records = await asyncio.get_running_loop().run_in_executor(
                    self.scoring, self.merger.publish_ready, self.backend, self.fallback, self.stopping)
            except Cancelled as stopped:  # its reports are in the table: the next start merges the window again
                log.info("%s; the window stays pending for the next start", stopped)
                continue
            finally:
                self.progress.busy_since = None
            for record in records:
                # wait for the broker's acknowledgement: a list is published, or the worker stops saying why
                await (await self.topics.trending.send(key=str(record["window"]["index"]).encode(), value=record))
                self.topics.merger_state["latest"] = record  # durable: the page shows it again after a restart
                self.metrics.count_published(TrendingRecord.from_dict(record))
            self.store.save_published(self.merger, records)
            self.progress.processed(event.message.tp, event.message.offset)
