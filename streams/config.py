"""The worker's settings: one typed record, each field read from one env var, defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from trail.decoding import CANDIDATE_DECODINGS, DEFAULT_EXPLANATION_CANDIDATES
from trail.errors import ConfigError
from trail.signals import TrendConfig
from trail.window_driver import DriverSettings
from trail.windows import WindowSpec, parse_duration

from .progress import STALL_AFTER_S
from .settings import KafkaSettings, TopicNames, setting_reader

__all__ = ["BACKEND_CHOICES", "WorkerConfig"]


BACKEND_CHOICES = "baseline, baseline:holt, onnx, triton://HOST:GRPC_PORT"


def _known_backend(url: str) -> bool:
    return url in ("baseline", "baseline:ema", "baseline:holt", "onnx") or (
        url.startswith("triton://") and len(url) > len("triton://"))


@dataclass(frozen=True)
class WorkerConfig:
    """``TRAIL_APP_ID`` names the consumer group and the internal topics; workers sharing it share the work."""

    app_id: str = "trail"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicNames = field(default_factory=TopicNames)
    window: WindowSpec = field(default_factory=WindowSpec)  # TRAIL_WINDOW (7d), TRAIL_ALLOWED_LATENESS (0s)
    trend: TrendConfig = field(default_factory=TrendConfig)
    n_candidates: int = 200  # TRAIL_CANDIDATES: items scored by the model per window
    top_k: int = 20  # TRAIL_TOP_K: items published (and explained) per window
    # TRAIL_EXPLANATION_CANDIDATES: decoding rounds tried per item until the checker verifies a text (1 = greedy
    # only, 2 adds constrained greedy, 3-8 add constrained samples; each round is one batched decode)
    explanation_candidates: int = DEFAULT_EXPLANATION_CANDIDATES
    close_on_wall_clock: bool = False  # TRAIL_LIVE=1: also close windows on the wall clock (idle topics)
    data_dir: str = ".trail-data"  # TRAIL_DATA_DIR: RocksDB state of this worker
    web_port: int = 6066  # TRAIL_WEB_PORT
    web_host: str = "127.0.0.1"  # TRAIL_WEB_HOST: loopback unless you mean to expose it
    backend_url: str = "baseline"  # TRAIL_BACKEND: baseline | baseline:holt | onnx | triton://HOST:GRPC_PORT
    model_repository: str = "triton_models"  # TRAIL_MODEL_REPOSITORY: where `make export-onnx` publishes versions
    model_name: str = "trail"  # TRAIL_MODEL_NAME
    partitions: int | None = None  # TRAIL_PARTITIONS: partitions of the interactions topic (default: ask Kafka)
    batch_size: int = 2000  # TRAIL_BATCH: events taken per batch (each item's record is written once per batch)
    max_items: int = 1_000_000  # TRAIL_MAX_ITEMS: items tracked per partition; events of new items beyond go to the DLQ
    log_format: str = "text"  # TRAIL_LOG_FORMAT: text | json (one JSON object per line, for log shippers)
    replication_factor: int = 1  # TRAIL_REPLICATION_FACTOR: of the worker's internal topics and changelogs
    stall_after_s: float = STALL_AFTER_S  # TRAIL_STALL_AFTER: /health not ready when waiting input is this still

    def __post_init__(self) -> None:
        if self.n_candidates < 1 or self.top_k < 1:
            raise ConfigError("TRAIL_CANDIDATES and TRAIL_TOP_K must be >= 1")
        if self.top_k > self.n_candidates:
            raise ConfigError(f"TRAIL_TOP_K ({self.top_k}) cannot exceed TRAIL_CANDIDATES ({self.n_candidates})")
        if not 1 <= self.explanation_candidates <= len(CANDIDATE_DECODINGS):
            raise ConfigError(f"TRAIL_EXPLANATION_CANDIDATES must be 1..{len(CANDIDATE_DECODINGS)}, got "
                             f"{self.explanation_candidates}")
        if self.max_items < 1 or self.batch_size < 1 or self.replication_factor < 1:
            raise ConfigError("TRAIL_MAX_ITEMS, TRAIL_BATCH and TRAIL_REPLICATION_FACTOR must be >= 1")
        if not _known_backend(self.backend_url):
            raise ConfigError(f"TRAIL_BACKEND={self.backend_url!r} is not a known backend ({BACKEND_CHOICES})")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"TRAIL_LOG_FORMAT must be text or json, got {self.log_format!r}")

    @property
    def summaries_topic(self) -> str:
        return f"{self.app_id}-window-summaries"

    def driver_settings(self, partitions: int) -> DriverSettings:
        """What each partition's driver (trail.window_driver) runs with: the same record the offline replay gets."""
        return DriverSettings(self.window, self.trend, self.n_candidates, partitions, self.max_items)

    @classmethod
    def from_env(cls) -> "WorkerConfig":
        env = setting_reader()
        defaults = cls()
        return cls(
            app_id=env("TRAIL_APP_ID", defaults.app_id),
            kafka=KafkaSettings.from_env(),
            topics=TopicNames.from_env(),
            window=WindowSpec(parse_duration(env("TRAIL_WINDOW", "7d")),
                              parse_duration(env("TRAIL_ALLOWED_LATENESS", "0s"))),
            trend=TrendConfig(
                board_size=env.integer("TRAIL_BOARD_SIZE", defaults.trend.board_size),
                evict_after_idle_windows=env.integer("TRAIL_EVICT_AFTER", defaults.trend.evict_after_idle_windows),
            ),
            n_candidates=env.integer("TRAIL_CANDIDATES", defaults.n_candidates),
            top_k=env.integer("TRAIL_TOP_K", defaults.top_k),
            explanation_candidates=env.integer("TRAIL_EXPLANATION_CANDIDATES", defaults.explanation_candidates),
            close_on_wall_clock=env("TRAIL_LIVE", "0") in ("1", "true", "yes"),
            data_dir=env("TRAIL_DATA_DIR", defaults.data_dir),
            web_port=env.integer("TRAIL_WEB_PORT", defaults.web_port),
            web_host=env("TRAIL_WEB_HOST", defaults.web_host),
            backend_url=env("TRAIL_BACKEND", defaults.backend_url),
            model_repository=env("TRAIL_MODEL_REPOSITORY", defaults.model_repository),
            model_name=env("TRAIL_MODEL_NAME", defaults.model_name),
            partitions=env.integer("TRAIL_PARTITIONS", 0) or None,
            batch_size=env.integer("TRAIL_BATCH", defaults.batch_size),
            max_items=env.integer("TRAIL_MAX_ITEMS", defaults.max_items),
            log_format=env("TRAIL_LOG_FORMAT", defaults.log_format),
            replication_factor=env.integer("TRAIL_REPLICATION_FACTOR", defaults.replication_factor),
            stall_after_s=env.number("TRAIL_STALL_AFTER", defaults.stall_after_s),
        )
