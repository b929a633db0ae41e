"""``make bench-stream``: the stream pipeline's speed against a raw consumer, on the real local broker.

In one run, on one topic of N synthetic interaction events (Zipf-distributed over many items, event time spread
over several windows):
  (a) a raw aiokafka consumer drains the topic (the ceiling: bytes off the wire, nothing else);
  (b) the real Faust worker (validation, River state, tables with changelogs, window closes) counts them;
  (c) closing one window for 100,000 tracked items with the same code the worker runs (in-process);
  (d) memory and serialised state per tracked item;
  (e) window closes inside the real worker, 100,000 tracked items, every item active and every item idle;
  (f) a do-nothing Faust agent on the topic of (a) and (b): the framework's own ceiling on this machine.
Prints the numbers and the (b)/(a) ratio; writes them as JSON to ``reports/bench_stream.json``
(``--close-only``: (c), (d), (e) to ``reports/bench_window_close.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
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
from streams.kafka_io import Publisher, create_topics, message_count  # noqa: E402
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


def run_worker(bootstrap: str, prefix: str, n_events: int, window: str, loglevel: str = "warn",
               log_path: Path | None = None, windows_closed: int = 0) -> tuple[float, str]:
    """Start ``trail worker`` on the topics, wait until it has counted ``n_events`` and closed ``windows_closed``
    partition windows (its /metrics), stop it.
    Returns the seconds from its first counted event and the last metrics text."""
    import subprocess
    import urllib.request

    port = free_port()
    data = tempfile.mkdtemp(prefix="trail-bench-")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TRAIL_APP_ID": f"{prefix}-app",
           "TRAIL_TOPIC_INTERACTIONS": f"{prefix}-interactions", "TRAIL_TOPIC_ITEMS": f"{prefix}-items",
           "TRAIL_TOPIC_TRENDING": f"{prefix}-trending", "TRAIL_TOPIC_DLQ": f"{prefix}-dlq",
           "TRAIL_WINDOW": window, "TRAIL_WEB_PORT": str(port), "TRAIL_DATA_DIR": data}
    log_path = log_path or Path(data) / "worker.log"
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "trail_cli", "worker", "--loglevel", loglevel], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = None
    counted = 0
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker died: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            counted = metric_value(text, "trail_events_total")
            if started is None and counted > 0:
                started = time.monotonic() - 0.25  # polled every 0.25 s: the first event came at most that early
            if counted >= n_events and metric_value(text, "trail_partition_windows_closed_total") >= windows_closed:
                return time.monotonic() - started, text
            time.sleep(0.25)
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def metric_value(metrics: str, name: str) -> int:
    """One counter from the worker's Prometheus text."""
    return int(next(line.split()[1] for line in metrics.splitlines() if line.startswith(name)))


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


CLOSE_LINE = re.compile(r"closed window (\d+): (\d+) items, (\d+) events in ([\d.]+) s")


def worker_close(settings: KafkaSettings, n_items: int) -> dict[str, float]:
    """(e) Window closes inside the real worker (River, table and changelog writes, the report to the merger):
    day 0 and day 1 each give every one of ``n_items`` items one event, one event on day 3 closes days 1 and 2.
    The close of day 1 has every item active; day 2 has every item idle (updated with zero). Events are sent as
    batch messages of 500 so the ingest takes seconds, not minutes."""
    prefix = "close"
    topic = f"{prefix}-interactions"
    create_topics(settings, TopicNames(topic, f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq"), partitions=1)
    day = 86_400_000
    start_ms = 1_700_006_400_000 - 1_700_006_400_000 % day
    events = [Interaction(f"item{n}", start_ms + d * day + n % 1000, "view", f"u{n % 997}").to_json()
              for d in (0, 1) for n in range(n_items)]
    events.append(Interaction("item0", start_ms + 3 * day, "view", "u0").to_json())
    with Publisher(settings, linger_ms=50) as publisher:
        for first in range(0, len(events), 500):
            publisher.send_to(topic, 0, b"[" + b",".join(events[first:first + 500]) + b"]")
        publisher.flush(timeout_s=600)
    with tempfile.TemporaryDirectory(prefix="trail-close-") as folder:
        log_path = Path(folder) / "worker.log"
        run_worker(settings.bootstrap_servers, prefix, len(events), window="1d", loglevel="info", log_path=log_path,
                   windows_closed=3)
        closes = []
        for line in log_path.read_text().splitlines():
            found = CLOSE_LINE.search(line)
            if found:
                print("   ", line.strip()[-150:])
                closes.append((int(found.group(1)), int(found.group(2)), float(found.group(4))))
    if len(closes) < 3:
        raise RuntimeError(f"expected 3 window closes in the worker log, found {closes}")
    (_, _, first_s), (_, active_items, active_s), (_, idle_items, idle_s) = closes[:3]
    return {"worker_close_items": active_items, "worker_close_first_s": first_s,
            "worker_close_all_active_s": active_s, "worker_close_all_idle_s": idle_s}


def throughput(settings: KafkaSettings, args: argparse.Namespace) -> dict[str, object]:
    """(a) and (b) on one topic of ``args.events`` events."""
    prefix = "bench"
    create_topics(settings, TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending",
                                       f"{prefix}-dlq"), partitions=args.partitions)
    produce_s = produce(settings, f"{prefix}-interactions", args.events, args.items, span_ms=5 * 86_400_000,
                        batch=args.batch)
    print(f"produced {args.events:,} events in {produce_s:.1f} s ({args.events / produce_s:,.0f}/s)")
    raw_s = asyncio.run(drain_raw(settings.bootstrap_servers, f"{prefix}-interactions", args.events))
    print(f"(a) raw aiokafka consumer: {args.events / raw_s:,.0f} events/s ({raw_s:.1f} s)")
    faust_s, _ = run_worker(settings.bootstrap_servers, prefix, args.events, window="1d")
    print(f"(b) Faust + River worker: {args.events / faust_s:,.0f} events/s ({faust_s:.1f} s)")
    print(f"(b)/(a) = {raw_s / faust_s:.3f}")
    messages = message_count(settings, f"{prefix}-interactions")
    ceiling = faust_ceiling(settings.bootstrap_servers, f"{prefix}-interactions", messages, cython=False)
    ceiling_cython = faust_ceiling(settings.bootstrap_servers, f"{prefix}-interactions", messages, cython=True)
    worker_messages_per_s = messages / faust_s
    print(f"(f) a do-nothing Faust agent on the same topic: {ceiling:,.0f} messages/s "
          f"({ceiling_cython:,.0f} with cython_optimizations); the worker's {worker_messages_per_s:,.0f} messages/s "
          f"are {worker_messages_per_s / ceiling:.2f} of it; the ceiling "
          f"is {ceiling * (args.events / messages) / (args.events / raw_s):.3f} of the raw consumer's rate")
    return {"events": args.events, "items": args.items, "partitions": args.partitions, "batch": args.batch,
            "raw_events_per_s": round(args.events / raw_s), "worker_events_per_s": round(args.events / faust_s),
            "ratio": round(raw_s / faust_s, 3), "faust_noop_messages_per_s": round(ceiling),
            "faust_noop_cython_optimizations_messages_per_s": round(ceiling_cython),
            "worker_cython_optimizations": os.environ.get("CYTHON_OPTIMIZATIONS", "") not in ("", "0", "false"),
            "worker_share_of_faust_ceiling": round(worker_messages_per_s / ceiling, 3)}


def faust_ceiling(bootstrap: str, topic: str, messages: int, cython: bool) -> float:
    """(f) ``benchmarks/faust_ceiling.py``: messages/s of a Faust agent that only counts; ``cython`` turns on
    Faust's ``cython_optimizations`` (its repaired Cython stream iterator and conductor, off by default)."""
    import subprocess

    env = {**os.environ, "CYTHON_OPTIMIZATIONS": "1" if cython else ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faust_ceiling.py"), bootstrap, topic,
                           str(messages)], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    found = re.search(r"CEILING ([\d.]+)", done.stdout + done.stderr)  # Faust logs what its agents print
    if found is None:
        raise RuntimeError(f"the Faust ceiling run printed no result: {(done.stdout + done.stderr)[-2000:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--close-items", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1, help="events per message (1 = one JSON object each)")
    parser.add_argument("--worker-close-items", type=int, default=100_000)
    parser.add_argument("--close-only", action="store_true", help="only (c), (d) and (e): the window-close numbers")
    args = parser.parse_args()

    close = window_close(args.close_items)
    print(f"(c) window close, {close['close_items']} tracked items: {close['close_warm_with_encode_s']} s in a running "
          f"worker (River objects cached, state encoded), {close['close_cold_s']} s after a restart (all state "
          f"decoded), {close['close_tracker_only_s']} s tracker alone")
    print(f"(d) state per tracked item: {close['state_bytes_per_item']} bytes JSON, "
          f"{close['python_bytes_per_item']} bytes in Python")

    result: dict[str, object] = {**close}
    with tempfile.TemporaryDirectory() as folder:
        broker = LocalKafka(Path(folder) / "kafka", port=free_port(), controller_port=free_port(), heap="1g").start()
        try:
            settings = KafkaSettings(broker.bootstrap_servers)
            if not args.close_only:
                result.update(throughput(settings, args))
            in_worker = worker_close(settings, args.worker_close_items)
            print(f"(e) window close inside the worker, {in_worker['worker_close_items']} tracked items: "
                  f"{in_worker['worker_close_all_active_s']} s with every item active, "
                  f"{in_worker['worker_close_all_idle_s']} s with every item idle "
                  f"(first close, River state created: {in_worker['worker_close_first_s']} s)")
            result.update(in_worker)
        finally:
            broker.stop()
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    name = "bench_window_close" if args.close_only else f"bench_stream{'' if args.batch == 1 else f'_batch{args.batch}'}"
    out = ROOT / "reports" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
