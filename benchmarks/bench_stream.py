"""``make bench-stream``: the stream pipeline's speed against a raw consumer, on the real local broker.

In one run, on one topic of N synthetic interaction events (Zipf-distributed over many items, event time spread
over several windows):
  (a) a raw aiokafka consumer drains the topic (the ceiling: bytes off the wire, nothing else);
  (b) the real Faust worker (validation, River state, tables with changelogs, window closes) counts them;
  (c) closing one window for 100,000 tracked items with the same code the worker runs (in-process);
  (d) memory and serialised state per tracked item.
Prints the numbers and the (b)/(a) ratio; writes them as JSON to ``reports/bench_stream.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faust.utils import json as faust_json  # noqa: E402  (orjson when installed, as in the worker's tables)

from localstack import LocalKafka, free_port  # noqa: E402
from streams.kafka_io import Publisher, create_topics  # noqa: E402
from streams.settings import KafkaSettings, TopicNames  # noqa: E402
from trail.events import Interaction  # noqa: E402
from trail.signals import TrendConfig  # noqa: E402
from trail.tracker import ItemRecord, apply_event, close_partition_window  # noqa: E402


def produce(settings: KafkaSettings, topic: str, n_events: int, n_items: int, span_ms: int, batch: int) -> float:
    """Zipf-distributed events; ``batch > 1`` sends JSON arrays grouped by partition (as ``trail replay --batch``)."""
    rng = random.Random(42)
    start_ms = 1_700_000_000_000
    started = time.monotonic()
    pending: dict[int, list[bytes]] = {}
    with Publisher(settings, linger_ms=50, max_in_flight_requests_per_connection=5) as publisher:
        for i in range(n_events):
            item = f"item{min(int(rng.paretovariate(1.1)), n_items) - 1}"
            event = Interaction(item, start_ms + i * span_ms // n_events, "view", f"u{rng.randrange(100_000)}")
            if batch == 1:
                publisher.send(topic, item, event.to_json())
                continue
            partition = publisher.partition_of(topic, item)
            pending.setdefault(partition, []).append(event.to_json())
            if len(pending[partition]) == batch:
                publisher.send_to(topic, partition, b"[" + b",".join(pending.pop(partition)) + b"]")
        for partition, values in pending.items():
            publisher.send_to(topic, partition, b"[" + b",".join(values) + b"]")
        publisher.flush(timeout_s=600)
    return time.monotonic() - started


async def drain_raw(bootstrap: str, topic: str, n_events: int) -> float:
    """Messages off the wire, counted in events (a batch message's JSON array is decoded to count it)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    seen = 0
    started = time.monotonic()
    try:
        while seen < n_events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    seen += len(json.loads(message.value)) if message.value[:1] == b"[" else 1
    finally:
        await consumer.stop()
    return time.monotonic() - started


def run_worker(bootstrap: str, prefix: str, n_events: int, window: str) -> tuple[float, str]:
    import subprocess
    import urllib.request

    port = free_port()
    data = tempfile.mkdtemp(prefix="trail-bench-")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TRAIL_APP_ID": f"{prefix}-app",
           "TRAIL_TOPIC_INTERACTIONS": f"{prefix}-interactions", "TRAIL_TOPIC_ITEMS": f"{prefix}-items",
           "TRAIL_TOPIC_TRENDING": f"{prefix}-trending", "TRAIL_TOPIC_DLQ": f"{prefix}-dlq",
           "TRAIL_WINDOW": window, "TRAIL_WEB_PORT": str(port), "TRAIL_DATA_DIR": data}
    log = open(Path(data) / "worker.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "trail_cli", "worker", "--loglevel", "warn"], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = None
    counted = 0
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker died: {(Path(data) / 'worker.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            counted = int(next(line.split()[1] for line in text.splitlines() if line.startswith("trail_events_total")))
            if started is None and counted > 0:
                started = time.monotonic() - 0.25  # polled every 0.25 s: the first event came at most that early
            if counted >= n_events:
                return time.monotonic() - started, text
            time.sleep(0.25)
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def window_close(n_items: int) -> dict[str, float]:
    config = TrendConfig()
    rng = random.Random(1)
    records = {}
    for index in range(3):  # three windows of history, so every item's River state is past its warm-up
        for n in range(n_items):
            record = records.setdefault(f"i/0/item{n}", ItemRecord(f"item{n}"))
            for _ in range(rng.randrange(3)):
                apply_event(record, Interaction(record.item_id, 1_700_000_000_000, user_id=str(rng.randrange(50))), index)
        close_partition_window(records, index, config, n_candidates=200)
    for n in range(n_items):
        apply_event(records[f"i/0/item{n}"], Interaction(f"item{n}", 1_700_000_000_000), 3)
    states = {key: record.to_state() for key, record in records.items()}
    started = time.monotonic()  # a worker after a restart: every River object rebuilt from the table
    loaded = {key: ItemRecord.from_state(state, config) for key, state in states.items()}
    close_partition_window(loaded, 3, config, n_candidates=200)
    written = {key: faust_json.dumps(record.to_state()) for key, record in loaded.items()}
    cold = time.monotonic() - started
    started = time.monotonic()  # a running worker: River objects cached, new state encoded for the changelog
    close_partition_window(records, 3, config, n_candidates=200)
    encoded = [faust_json.dumps(record.trend_state()) for record in records.values()]  # the table's codec
    warm = time.monotonic() - started
    assert len(encoded) == n_items
    started = time.monotonic()
    for n in range(n_items):
        apply_event(records[f"i/0/item{n}"], Interaction(f"item{n}", 1_700_000_000_000), 4)
    result = close_partition_window(records, 4, config, n_candidates=200)
    pure = time.monotonic() - started
    bytes_per_item = sum(len(v) for v in written.values()) / len(written)
    tracemalloc.start()
    sample = {key: ItemRecord.from_state(json.loads(value), config) for key, value in list(written.items())[:10_000]}
    memory = tracemalloc.get_traced_memory()[0] / len(sample)
    tracemalloc.stop()
    assert len(result.windows) == n_items
    return {"close_items": n_items, "close_cold_s": round(cold, 3), "close_warm_with_encode_s": round(warm, 3),
            "close_tracker_only_s": round(pure, 3),
            "state_bytes_per_item": round(bytes_per_item, 1), "python_bytes_per_item": round(memory, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--close-items", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1, help="events per message (1 = one JSON object each)")
    args = parser.parse_args()

    close = window_close(args.close_items)
    print(f"(c) window close, {close['close_items']} tracked items: {close['close_warm_with_encode_s']} s in a running "
          f"worker (River objects cached, state encoded), {close['close_cold_s']} s after a restart (all state "
          f"decoded), {close['close_tracker_only_s']} s tracker alone")
    print(f"(d) state per tracked item: {close['state_bytes_per_item']} bytes JSON, "
          f"{close['python_bytes_per_item']} bytes in Python")

    with tempfile.TemporaryDirectory() as folder:
        broker = LocalKafka(Path(folder) / "kafka", port=free_port(), controller_port=free_port(), heap="1g").start()
        try:
            settings = KafkaSettings(broker.bootstrap_servers)
            prefix = "bench"
            create_topics(settings, TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending",
                                               f"{prefix}-dlq"), partitions=args.partitions)
            produce_s = produce(settings, f"{prefix}-interactions", args.events, args.items, span_ms=5 * 86_400_000,
                                batch=args.batch)
            print(f"produced {args.events:,} events in {produce_s:.1f} s ({args.events / produce_s:,.0f}/s)")
            raw_s = asyncio.run(drain_raw(broker.bootstrap_servers, f"{prefix}-interactions", args.events))
            print(f"(a) raw aiokafka consumer: {args.events / raw_s:,.0f} events/s ({raw_s:.1f} s)")
            faust_s, metrics = run_worker(broker.bootstrap_servers, prefix, args.events, window="1d")
            print(f"(b) Faust + River worker: {args.events / faust_s:,.0f} events/s ({faust_s:.1f} s)")
            print(f"(b)/(a) = {raw_s / faust_s:.3f}")
        finally:
            broker.stop()
    result = {"events": args.events, "items": args.items, "partitions": args.partitions, "batch": args.batch,
              "raw_events_per_s": round(args.events / raw_s), "worker_events_per_s": round(args.events / faust_s),
              "ratio": round(raw_s / faust_s, 3), **close,
              "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    out = ROOT / "reports" / f"bench_stream{'' if args.batch == 1 else f'_batch{args.batch}'}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
