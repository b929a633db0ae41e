"""Dataset adapters: real interaction logs → ``ItemMeta`` + time-ordered ``Interaction`` streams."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Dataset, DatasetError, DatasetStats
from .generic_csv import GenericCsv, parse_mapping
from .movielens import MovieLens
from .online_retail import OnlineRetail
from .ordering import sorted_by_time
from .stackexchange import StackExchange

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetError",
    "DatasetStats",
    "GenericCsv",
    "MovieLens",
    "OnlineRetail",
    "StackExchange",
    "default_datasets_dir",
    "open_dataset",
    "sorted_by_time",
]

DATASET_NAMES = ("online-retail", "stackexchange", "movielens", "csv", "kafka")


def default_datasets_dir() -> Path:
    """``$TRAIL_DATASETS``, else ``../shared/datasets`` next to the project folder."""
    configured = os.environ.get("TRAIL_DATASETS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def open_dataset(name: str, path: Path | None = None, mapping: str = "") -> Dataset:
    """The adapter for ``name`` reading ``path`` (a file or folder; defaults to the shared datasets)."""
    root = default_datasets_dir()
    if path is not None and not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    if name == "online-retail":
        return OnlineRetail(path or root / "online_retail" / "online_retail.csv.gz")
    if name == "stackexchange":
        return StackExchange(path or root / "stackexchange_quantum")
    if name == "movielens":
        if path is None:
            raise DatasetError("movielens needs --path to a folder with u.data+u.item or ratings.csv+movies.csv")
        return MovieLens(path)
    if name == "csv":
        if path is None:
            raise DatasetError("csv needs --path to the file and --map with at least item_id=COL,ts=COL")
        return GenericCsv(path, parse_mapping(mapping))
    if name == "kafka":  # the whole interactions/items topics of the worker's cluster (KAFKA_*, TRAIL_TOPIC_*)
        from streams.settings import KafkaSettings, TopicNames

        from .kafka_topics import KafkaTopics

        return KafkaTopics(KafkaSettings.from_env(), TopicNames.from_env())
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
