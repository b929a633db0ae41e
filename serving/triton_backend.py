"""The Triton backend: the same TRAIL version folder served by a Triton Inference Server, over gRPC.

Requests carry text and numbers only (prompt, features, current log count, forecast cue), so the worker needs
no model files. Every call has a timeout; failures are retried a bounded number of times with exponential
backoff, then raised as :class:`~serving.backend.BackendUnavailable` so the worker falls back (and flags it)
without ever stopping ingestion. The version named in the output is the one Triton reports having served.

Prompts are rendered in the format the served version reads, which every response reports (``PROMPT_FORMAT``):
the client renders in the last format it saw (the newest at first) and, when a response says the version reads
another one (a version of another format was loaded), renders again and repeats the request once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from trail.decoding import GREEDY, Decoding
from trail.errors import Cancelled, ConfigError
from trail.explain import Forecast
from trail.prompt import PROMPT_FORMAT, explanation_cue
from trail.signals import TrendSignals

from .backend import BackendUnavailable, ModelInfo, never
from .onnx_backend import forecasts_from_log_counts, score_inputs

__all__ = ["TritonBackend", "parse_triton_url"]

log = logging.getLogger(__name__)


def parse_triton_url(url: str) -> str:
    """``triton://host:port`` → ``host:port`` (gRPC)."""
    if not url.startswith("triton://") or not url[len("triton://"):]:
        raise ConfigError(f"a Triton backend URL looks like triton://127.0.0.1:8001, got {url!r}")
    return url[len("triton://"):].rstrip("/")


# tritonclient's own defaults (message sizes, keepalive as in its KeepAliveOptions), plus reconnection that
# recovers as soon as a restarted server listens. By default gRPC shares one connection ("subchannel") per address
# across channels and, after failures, waits up to 120 s between reconnection attempts, failing calls at once in
# between with the last error — so the fresh client made after a failure still saw "connection refused" seconds
# after Triton was back. A local subchannel pool gives each new client its own connection attempt.
_INT32_MAX = 2**31 - 1
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", _INT32_MAX),
    ("grpc.max_receive_message_length", _INT32_MAX),
    ("grpc.keepalive_time_ms", _INT32_MAX),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass
class TritonBackend:
    address: str = "127.0.0.1:8001"
    model_name: str = "trail"
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.5
    batch_size: int = 32
    _version: str = field(default="?", init=False)
    _prompt_format: int = field(default=PROMPT_FORMAT, init=False)  # the last one the served version reported
    _client: object | None = field(default=None, init=False, repr=False)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.model_name, self._version, "triton")

    def _grpc(self):  # noqa: ANN202 - tritonclient.grpc.InferenceServerClient
        import tritonclient.grpc as grpcclient

        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.address, channel_args=_CHANNEL_ARGS)
        return self._client

    def _infer(self, prompts: Sequence[str], features: np.ndarray, current: np.ndarray,
               cues: Sequence[str], decodings: Sequence[Decoding]) -> tuple[np.ndarray, list[str]]:
        import tritonclient.grpc as grpcclient

        arrays = (
            ("PROMPT", np.array([p.encode() for p in prompts], dtype=object).reshape(-1, 1), "BYTES"),
            ("FEATURES", np.asarray(features, dtype=np.float32), "FP32"),
            ("CURRENT_LOG_COUNT", np.asarray(current, dtype=np.float32).reshape(-1, 1), "FP32"),
            ("CUE", np.array([c.encode() for c in cues], dtype=object).reshape(-1, 1), "BYTES"),
            ("DECODING", np.array([d.to_list() for d in decodings], dtype=np.int32).reshape(-1, 2), "INT32"),
        )
        inputs = []
        for name, array, dtype in arrays:
            tensor = grpcclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                result = self._grpc().infer(self.model_name, inputs, client_timeout=self.timeout_s)
                self._version = result.get_response().model_version or self._version
                texts = [t.decode() for t in result.as_numpy("EXPLANATION").reshape(-1)]
                formats = result.as_numpy("PROMPT_FORMAT")  # absent from versions exported before it: format 1
                self._prompt_format = int(formats.reshape(-1)[0]) if formats is not None and formats.size else 1
                return result.as_numpy("LOG_COUNT").reshape(-1), texts
            except Exception as exc:  # noqa: BLE001 - tritonclient raises InferenceServerException and gRPC errors
                if attempt == self.retries:
                    raise BackendUnavailable(f"Triton at {self.address} failed {attempt + 1} times: {exc}") from None
                log.warning("Triton at %s: %s; retrying in %.1f s", self.address, exc, delay)
                time.sleep(delay)
                delay *= 2
                self._client = None
        raise AssertionError("unreachable")

    def _infer_rendered(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast] | None,
                        decodings: Sequence[Decoding]) -> tuple[np.ndarray, list[str]]:
        """One request rendered in the served format; repeated once if the response reports another format."""
        for _ in range(2):
            rendered = self._prompt_format
            prompts, features, current = score_inputs(signals, rendered)
            cues = ([""] * len(signals) if forecasts is None else
                    [explanation_cue(s, f.predicted_count, rendered) for s, f in zip(signals, forecasts)])
            log_counts, texts = self._infer(prompts, features, current, cues, decodings)
            if self._prompt_format == rendered:
                break
            log.info("Triton model %s version %s reads prompt format %d: rendering again", self.model_name,
                     self._version, self._prompt_format)
        return log_counts, texts

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        out: list[Forecast] = []
        for start in range(0, len(signals), self.batch_size):
            if start and cancelled():
                raise Cancelled(f"scoring given up after {start} of {len(signals)} items: stopping")
            chunk = signals[start: start + self.batch_size]
            log_counts, _ = self._infer_rendered(chunk, None, [GREEDY] * len(chunk))
            out.extend(forecasts_from_log_counts(log_counts))
        return out

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        """All items in one request: the model decodes them as one batch."""
        if not signals:
            return []
        _, texts = self._infer_rendered(signals, forecasts,
                                        list(decodings) if decodings is not None else [GREEDY] * len(signals))
        return list(texts)
