"""``trail kafka up|down`` and ``trail triton up|down``: the local services, started detached."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .kafka import PROJECT_ROOT, LocalKafka
from .triton import LocalTriton

__all__ = ["local_kafka", "local_triton", "register"]


def local_kafka() -> LocalKafka:
    """The broker of ``make kafka-up``: data in ``.kafka/data``, ports from ``TRAIL_KAFKA_PORT`` (9092) and
    ``TRAIL_KAFKA_CONTROLLER_PORT`` (9093)."""
    return LocalKafka(
        data_dir=PROJECT_ROOT / ".kafka" / "data",
        port=int(os.environ.get("TRAIL_KAFKA_PORT", "9092")),
        controller_port=int(os.environ.get("TRAIL_KAFKA_CONTROLLER_PORT", "9093")),
    )


def local_triton() -> LocalTriton:
    """The server of ``make triton-up``: serves ``triton_models/`` (``TRAIL_TRITON_REPOSITORY``) on 8000/8001/8002
    (``TRAIL_TRITON_HTTP_PORT`` / ``_GRPC_PORT`` / ``_METRICS_PORT``), loading every model found there."""
    repository = Path(os.environ.get("TRAIL_TRITON_REPOSITORY", PROJECT_ROOT / "triton_models"))
    models = tuple(sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").exists())) if repository.exists() else ()
    return LocalTriton(
        model_repository=repository,
        work_dir=PROJECT_ROOT / ".triton",
        http_port=int(os.environ.get("TRAIL_TRITON_HTTP_PORT", "8000")),
        grpc_port=int(os.environ.get("TRAIL_TRITON_GRPC_PORT", "8001")),
        metrics_port=int(os.environ.get("TRAIL_TRITON_METRICS_PORT", "8002")),
        load_models=models,
    )


def register(commands: argparse._SubParsersAction) -> None:
    for service in ("kafka", "triton"):
        parser = commands.add_parser(service, help=f"start or stop the local {service.title()} server")
        verbs = parser.add_subparsers(dest=f"{service}_verb", required=True, metavar="VERB")
        verbs.add_parser("up", help="start it in the background and wait until it is ready").set_defaults(
            run=_up, service=service)
        verbs.add_parser("down", help="stop it cleanly").set_defaults(run=_down, service=service)


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
