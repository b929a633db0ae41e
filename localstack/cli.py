"""``trail kafka up|down`` and ``trail triton up|down``: the local services, started detached."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


from streams.settings import setting_reader
from trail_cli.arguments import positive_float, positive_int
from trail.errors import ConfigError
from trail.windows import parse_duration

from .kafka import PROJECT_ROOT, LocalKafka
from .run import LocalRun, RunOptions, run_until_stopped
from .triton import LocalTriton

__all__ = ["local_kafka", "local_triton", "register"]


def local_kafka() -> LocalKafka:
    """The broker of ``make kafka-up``: data in ``.kafka/data`` (``TRAIL_KAFKA_DATA_DIR``), ports from
    ``TRAIL_KAFKA_PORT`` (9092) and ``TRAIL_KAFKA_CONTROLLER_PORT`` (9093)."""
    return LocalKafka(
        data_dir=Path(os.environ.get("TRAIL_KAFKA_DATA_DIR", PROJECT_ROOT / ".kafka" / "data")),
        port=setting_reader().integer("TRAIL_KAFKA_PORT", 9092),
        controller_port=setting_reader().integer("TRAIL_KAFKA_CONTROLLER_PORT", 9093),
    )


def local_triton() -> LocalTriton:
    """The server of ``make triton-up``: serves ``triton_models/`` (``TRAIL_TRITON_REPOSITORY``) on 8000/8001/8002
    (``TRAIL_TRITON_HTTP_PORT`` / ``_GRPC_PORT`` / ``_METRICS_PORT``), loading every model found there."""
    repository = Path(os.environ.get("TRAIL_TRITON_REPOSITORY", PROJECT_ROOT / "triton_models"))
    models = tuple(sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").exists())) if repository.exists() else ()
    return LocalTriton(
        model_repository=repository,
        work_dir=Path(os.environ.get("TRAIL_TRITON_WORK_DIR", PROJECT_ROOT / ".triton")),
        http_port=setting_reader().integer("TRAIL_TRITON_HTTP_PORT", 8000),
        grpc_port=setting_reader().integer("TRAIL_TRITON_GRPC_PORT", 8001),
        metrics_port=setting_reader().integer("TRAIL_TRITON_METRICS_PORT", 8002),
        load_models=models,
    )


SECONDS_PER_WINDOW = 60.0  # make run's pace: the shipped model scores 40 items and explains 10 in ~40-80 s on 2 cores


def register(commands: argparse._SubParsersAction) -> None:
    for service in ("kafka", "triton"):
        parser = commands.add_parser(service, help=f"start or stop the local {service.title()} server")
        verbs = parser.add_subparsers(dest=f"{service}_verb", required=True, metavar="VERB")
        verbs.add_parser("up", help="start it in the background and wait until it is ready").set_defaults(
            run=_up, service=service)
        verbs.add_parser("down", help="stop it cleanly").set_defaults(run=_down, service=service)


    run = commands.add_parser(
        "run", help="the whole product locally: Kafka, the model, a worker, a dataset replay, the live page")
    defaults = RunOptions()
    run.add_argument("--dataset", default=defaults.dataset, help="online-retail | stackexchange | movielens | csv")
    run.add_argument("--path", type=Path, help="dataset file or folder (default: the shared datasets)")
    run.add_argument("--speed", type=positive_float,
                     help="event time runs this many times faster than real time (default: one window in "
                          f"{SECONDS_PER_WINDOW:.0f} s: 10080 for weekly windows)")
    run.add_argument("--limit", type=positive_int, help="replay at most this many interactions")
    run.add_argument("--backend", choices=["onnx", "triton", "baseline"], default=defaults.backend,
                     help="embedded ONNX Runtime (default), a local Triton server, or the EMA baseline")
    run.add_argument("--checkpoint", type=Path, default=defaults.checkpoint,
                     help="exported when the model repository has no version yet")
    run.add_argument("--window", help="window size (default 7d; 1d for stackexchange)")
    run.add_argument("--candidates", type=positive_int, default=defaults.candidates,
                     help=f"items the model scores per window (default {defaults.candidates})")
    run.add_argument("--top-k", type=positive_int, default=defaults.top_k,
                     help=f"items published per window (default {defaults.top_k})")
    run.add_argument("--web-port", type=positive_int, default=setting_reader().integer("TRAIL_WEB_PORT", 6066))
    run.add_argument("--state-dir", type=Path, default=defaults.state_dir, help="worker state and logs")
    run.add_argument("--max-windows", type=positive_int,
                     help="stop everything after this many newly published windows (default: run until Ctrl-C)")
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.top_k > args.candidates:
        raise ConfigError(f"--top-k ({args.top_k}) cannot exceed --candidates ({args.candidates})")
    window = args.window or ("1d" if args.dataset == "stackexchange" else "7d")
    speed = args.speed or parse_duration(window) / 1000 / SECONDS_PER_WINDOW
    options = RunOptions(
        dataset=args.dataset, dataset_path=args.path, speed=speed, limit=args.limit, backend=args.backend,
        checkpoint=args.checkpoint.resolve(), window=window, candidates=args.candidates, top_k=args.top_k,
        web_port=args.web_port, state_dir=args.state_dir.resolve(), max_windows=args.max_windows,
        model_repository=Path(os.environ.get("TRAIL_MODEL_REPOSITORY", RunOptions.model_repository)).resolve(),
    )
    local = LocalRun(options, local_kafka(), local_triton() if args.backend == "triton" else None)
    return run_until_stopped(local)


def _up(args: argparse.Namespace) -> int:
    server = local_kafka() if args.service == "kafka" else local_triton()
    if server.is_running() if args.service == "kafka" else server.is_ready():
        print(f"{args.service} is already running")
        return 0
    started = time.monotonic()
    server.start()
    where = server.bootstrap_servers if args.service == "kafka" else f"{server.url} (gRPC {server.grpc_url})"
    print(f"{args.service} ready at {where} in {time.monotonic() - started:.1f} s; log: {server.log_path}")
    return 0


def _down(args: argparse.Namespace) -> int:
    server = local_kafka() if args.service == "kafka" else local_triton()
    server.stop()
    print(f"{args.service} stopped")
    return 0
