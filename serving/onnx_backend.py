"""The embedded backend: TRAIL's exported ONNX graphs run inside the worker, newest good version of the repository.

Before each window's scoring it looks at the model folder of the Triton repository (the same folder
``make export-onnx`` publishes into): a newer complete version is loaded and used from that window on (hot swap,
no restart); a version that cannot be loaded is logged and skipped, and the one already serving stays. With no
servable version at all, :class:`~serving.backend.BackendUnavailable` is raised, so the worker falls back to the
baseline and says so in its output.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from trail.decoding import GREEDY, Decoding
from trail.errors import Cancelled
from trail.explain import Forecast
from trail.features import model_features
from trail.prompt import PROMPT_FORMAT, PromptFormatMismatch, explanation_cue, render_prompt
from trail.signals import TrendSignals

from .backend import BackendUnavailable, ModelInfo, never
from .trail_onnx import TrailOnnx, VersionError

__all__ = ["OnnxBackend"]

log = logging.getLogger(__name__)


def score_inputs(signals: Sequence[TrendSignals],
                 prompt_format: int = PROMPT_FORMAT) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts (in the model's format), features and log1p(current count): everything the exported scoring graph
    needs, from the core."""
    prompts = [render_prompt(s, prompt_format) for s in signals]
    current = np.log1p(np.array([s.item.count for s in signals], dtype=np.float32))
    return prompts, model_features(signals), current


def forecasts_from_log_counts(log_counts: np.ndarray) -> list[Forecast]:
    """The score is the predicted log1p count; the predicted count its inverse, never negative."""
    return [Forecast(predicted_count=max(0.0, math.expm1(float(v))), score=float(v)) for v in log_counts]


@dataclass
class OnnxBackend:
    repository: Path = Path("triton_models")
    model_name: str = "trail"
    threads: int | None = None
    batch_size: int = 32
    _runtime: TrailOnnx | None = field(default=None, init=False, repr=False)
    _version: int = field(default=0, init=False)
    _rejected: set[int] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.model_name, str(self._version), "onnx")

    def refresh(self) -> int:
        """Switch to the newest loadable version if it is newer than the one serving, or if the serving one was
        withdrawn from the repository (``trail deploy --rollback``); returns the version."""
        folder = self.repository / self.model_name
        versions = sorted((int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()),
                          reverse=True) if folder.is_dir() else []
        withdrawn = self._runtime is not None and self._version not in versions
        if withdrawn:
            log.warning("model %s version %d was withdrawn from %s", self.model_name, self._version, folder)
        for version in versions:
            if version <= self._version and not withdrawn:
                break
            if version in self._rejected:
                continue
            try:
                runtime = TrailOnnx(folder / str(version), threads=self.threads)  # refuses an unknown format
            except (VersionError, PromptFormatMismatch) as exc:
                self._rejected.add(version)
                log.error("model %s version %d rejected, still serving version %d: %s", self.model_name, version,
                          self._version, exc)
                continue
            with self._lock:
                self._runtime, self._version = runtime, version
            log.info("model %s: now serving version %d (%s)", self.model_name, version, runtime.providers[0])
            break
        return self._version

    @property
    def runtime(self) -> TrailOnnx:
        """The serving version's runtime (loading the newest version first)."""
        return self._current()

    def _current(self) -> TrailOnnx:
        self.refresh()
        if self._runtime is None:
            raise BackendUnavailable(f"no servable version of {self.model_name!r} in {self.repository}: "
                                     "run `make export-onnx`")
        return self._runtime

    def score(self, signals: Sequence[TrendSignals], cancelled: Callable[[], bool] = never) -> list[Forecast]:
        runtime = self._current()  # one version for the whole call: a window is never scored by two
        out: list[Forecast] = []
        for start in range(0, len(signals), self.batch_size):
            if start and cancelled():
                raise Cancelled(f"scoring given up after {start} of {len(signals)} items: stopping")
            prompts, features, current = score_inputs(signals[start: start + self.batch_size], runtime.prompt_format)
            out.extend(forecasts_from_log_counts(runtime.score(prompts, features, current)))
        return out

    def explain(self, signals: Sequence[TrendSignals], forecasts: Sequence[Forecast],
                decodings: Sequence[Decoding] | None = None) -> list[str | None]:
        runtime = self._runtime or self._current()  # the version that scored this window explains it
        decodings = list(decodings) if decodings is not None else [GREEDY] * len(signals)
        out: list[str | None] = []
        for start in range(0, len(signals), self.batch_size):
            end = start + self.batch_size
            chunk, fmt = list(zip(signals[start:end], forecasts[start:end])), runtime.prompt_format
            out.extend(runtime.explain_batch([render_prompt(s, fmt) for s, _ in chunk],
                                             [explanation_cue(s, f.predicted_count, fmt) for s, f in chunk],
                                             decodings[start:end]))
        return out
