"""The stream verbs of the ``trail`` CLI: topics, produce, replay, tail."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from trail_cli.arguments import positive_float, positive_int
from trail.errors import ConfigError
from trail.events import LIMITS, InvalidEvent, Interaction, parse_interaction, parse_item_meta, parse_ts

from .kafka_io import Publisher, create_topics, message_count, pretty, read_topic
from .replay import Pacer, replay
from .settings import KafkaSettings, TopicNames

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    topics = commands.add_parser("topics", help="manage TRAIL's Kafka topics")
    topic_verbs = topics.add_subparsers(dest="topics_verb", required=True, metavar="VERB")
    create = topic_verbs.add_parser("create", help="create interactions, items (compacted), trending and DLQ topics")
    create.add_argument("--partitions", type=positive_int, default=3, help="partitions of interactions and items")
    create.add_argument("--replication-factor", type=positive_int, default=1)
    create.set_defaults(run=_topics_create)

    produce = commands.add_parser("produce", help="publish events: JSON lines from stdin, or one from flags")
    produce.add_argument("--topic", default="interactions", help="topic name or role (interactions, items)")
    produce.add_argument("--item-id", help="publish one interaction for this item instead of reading stdin")
    produce.add_argument("--ts", help="event time (ISO-8601 or epoch seconds; default now)")
    produce.add_argument("--event-type", default="view")
    produce.add_argument("--user-id")
    produce.add_argument("--weight", type=float, default=1.0)
    produce.add_argument("--no-validate", action="store_true", help="send lines as they are (to exercise the DLQ)")
    produce.set_defaults(run=_produce)

    replay_cmd = commands.add_parser("replay", help="publish a dataset: items, then interactions in event-time order")
    replay_cmd.add_argument("dataset", help="online-retail | stackexchange | movielens | csv")
    replay_cmd.add_argument("--path", type=Path, help="dataset file or folder (default: the shared datasets)")
    replay_cmd.add_argument("--map", default="", help="csv only: FIELD=COLUMN,... (item_id and ts required)")
    replay_cmd.add_argument("--limit", type=positive_int, help="publish at most this many interactions")
    replay_cmd.add_argument("--rate", type=positive_float, help="at most this many events per second")
    replay_cmd.add_argument("--speed", type=positive_float, help="event time runs this many times faster than real time")
    replay_cmd.add_argument("--batch", type=positive_int, default=1,
                            help="events per message (JSON arrays, grouped by partition; max 1000; default 1)")
    replay_cmd.add_argument("--resume", action="store_true",
                            help="skip the interactions the topic already holds (continue an interrupted replay; "
                                 "one event per message)")
    replay_cmd.add_argument("--no-progress", action="store_true")
    replay_cmd.set_defaults(run=_replay)

    worker = commands.add_parser("worker", help="run a Faust stream worker (same as faust -A streams.app worker)")
    worker.add_argument("--window", help="window size, e.g. 7d, 1d, 6h (env TRAIL_WINDOW; default 7d)")
    worker.add_argument("--allowed-lateness", help="e.g. 1h (env TRAIL_ALLOWED_LATENESS; default 0s)")
    worker.add_argument("--backend", help="scorer (env TRAIL_BACKEND; default baseline)")
    worker.add_argument("--web-port", type=positive_int, help="web views port (env TRAIL_WEB_PORT; default 6066)")
    worker.add_argument("--data-dir", help="RocksDB state folder (env TRAIL_DATA_DIR; default .trail-data)")
    worker.add_argument("--live", action="store_true", help="also close windows on the wall clock (env TRAIL_LIVE=1)")
    worker.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(run=_worker)

    tail = commands.add_parser("tail", help="print a topic's records")
    tail.add_argument("topic", help="topic name or role (interactions, items, trending, dlq)")
    tail.add_argument("--raw", action="store_true", help="one raw value per line instead of pretty JSON")
    tail.add_argument("--latest", action="store_true", help="start at the end instead of the beginning")
    tail.add_argument("--max", type=positive_int, dest="max_records", help="stop after this many records")
    tail.add_argument("--idle-timeout", type=positive_float, help="stop when nothing arrives for this many seconds")
    tail.set_defaults(run=_tail)


def _topics_create(args: argparse.Namespace) -> int:
    outcome = create_topics(KafkaSettings.from_env(), TopicNames.from_env(), args.partitions, args.replication_factor)
    for name, state in outcome.items():
        print(f"{name}: {state}")
    return 0


def _produce(args: argparse.Namespace) -> int:
    topics = TopicNames.from_env()
    topic = topics.resolve(args.topic)
    is_items = topic == topics.items
    with Publisher(KafkaSettings.from_env()) as publisher:
        if args.item_id is not None:
            event = Interaction(item_id=args.item_id, ts_ms=parse_ts(args.ts) if args.ts else int(time.time() * 1000),
                                event_type=args.event_type, user_id=args.user_id, weight=args.weight)
            event = parse_interaction(event.to_json())  # the same checks a worker applies
            publisher.send(topic, event.item_id, event.to_json())
        else:
            for line_number, line in enumerate(sys.stdin.buffer, start=1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                key = None
                if not args.no_validate:
                    try:
                        record = parse_item_meta(line) if is_items else parse_interaction(line)
                    except InvalidEvent as exc:
                        publisher.flush()
                        raise InvalidEvent(exc.reason, f"stdin line {line_number}: {exc.message} "
                                                       f"({publisher.acknowledged} earlier events were published)") from None
                    key = record.item_id
                publisher.send(topic, key, line)
        publisher.flush()
        print(f"published {publisher.acknowledged} event(s) to {topic}", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from training.datasets import open_dataset  # the adapters live with the offline side; the CLI composes

    if args.batch > LIMITS.max_batch_events:
        raise ConfigError(f"--batch {args.batch} is over the {LIMITS.max_batch_events} events a message may carry")
    if args.resume and args.batch > 1:
        raise ConfigError("--resume counts the messages already in the topic: it needs one event per message (--batch 1)")
    dataset = open_dataset(args.dataset, args.path, args.map)
    topics = TopicNames.from_env()
    settings = KafkaSettings.from_env()
    skip = message_count(settings, topics.interactions) if args.resume else 0
    if skip:
        print(f"resuming: {topics.interactions} already holds {skip} interactions", file=sys.stderr)
    pacer = Pacer(rate=args.rate, speed=args.speed)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.limit, initial=min(skip, args.limit or skip), unit="ev", desc=f"replay {dataset.name}",
                   file=sys.stderr)
    stop = threading.Event()  # SIGTERM/SIGINT: stop after the current event, flush, report (a resume is exact)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with Publisher(settings) as publisher:
        result = replay(dataset.items(), dataset.interactions(), publisher, topics, limit=args.limit, pacer=pacer,
                        progress=bar.update if bar is not None else (lambda n: None), batch=args.batch, skip=skip,
                        should_stop=stop.is_set, sleep=stop.wait)
    if bar is not None:
        bar.close()
    span = ""
    if result.first_ts_ms is not None:
        from trail.events import format_ts

        span = f", event time {format_ts(result.first_ts_ms)} → {format_ts(result.last_ts_ms or 0)}"
    stopped = " (stopped early)" if stop.is_set() else ""
    print(f"published {result.items} items to {topics.items} and {result.interactions} interactions to "
          f"{topics.interactions} in {result.seconds:.1f} s{span}{stopped}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import os

    overrides = {"TRAIL_WINDOW": args.window, "TRAIL_ALLOWED_LATENESS": args.allowed_lateness,
                 "TRAIL_BACKEND": args.backend, "TRAIL_WEB_PORT": str(args.web_port) if args.web_port else None,
                 "TRAIL_DATA_DIR": args.data_dir, "TRAIL_LIVE": "1" if args.live else None}
    env = {**os.environ, **{key: value for key, value in overrides.items() if value}}
    from .config import WorkerConfig

    os.environ.update(env)
    WorkerConfig.from_env()  # a bad setting is one line here, not a traceback inside Faust
    os.execvp(sys.executable, [sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", args.loglevel])


def _tail(args: argparse.Namespace) -> int:
    topic = TopicNames.from_env().resolve(args.topic)
    count = 0
    for record in read_topic(KafkaSettings.from_env(), topic, from_beginning=not args.latest,
                             max_records=args.max_records, idle_timeout_s=args.idle_timeout):
        print(record.value.decode(errors="replace") if args.raw else pretty(record), flush=True)
        count += 1
    print(f"{count} record(s) from {topic}", file=sys.stderr)
    return 0
