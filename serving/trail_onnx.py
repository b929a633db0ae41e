"""One exported TRAIL version, run with ONNX Runtime and nothing else: no torch, no transformers.

A version folder (written by ``trail export``) holds ``score.onnx`` (backbone with merged LoRA + score head →
``log1p`` of the next count), ``generator.onnx`` (the same merged backbone as a causal LM with past key values,
for explanations), ``tokenizer.json`` and ``manifest.json``. This module is what both the worker's embedded
backend and the Triton python-backend model run, so their answers are the same by construction; it needs only
``onnxruntime``, ``tokenizers`` and ``numpy``.

Inputs are text and numbers: the prompt of :func:`trail.prompt.render_prompt`, the features of
:func:`trail.features.model_features`, ``log1p`` of the current count; for explanations the prompt and the
forecast cue of :func:`trail.prompt.forecast_cue`. Segments are tokenised separately and concatenated, exactly as
in training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

try:  # a Triton version folder carries trail/decoding.py, errors.py, serving_contract.py as trail_*.py, next to this
    from trail_decoding import GREEDY, Decoding, NumberConstraint, RowDecoder, next_token
    from trail_errors import TrailError
    from trail_serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, KV_KINDS, SCORE_INPUTS,
                                        SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
                                        present_output)
except ImportError:
    from trail.decoding import GREEDY, Decoding, NumberConstraint, RowDecoder, next_token
    from trail.errors import TrailError
    from trail.serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, KV_KINDS, SCORE_INPUTS,
                                        SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
                                        present_output)

__all__ = ["SCORE_FILE", "GENERATOR_FILE", "TOKENIZER_FILE", "MANIFEST_FILE", "TrailOnnx", "VersionError"]

SCORE_FILE = "score.onnx"
GENERATOR_FILE = "generator.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (SCORE_FILE, GENERATOR_FILE, TOKENIZER_FILE, MANIFEST_FILE)


class VersionError(TrailError, RuntimeError):
    """A version folder that cannot serve: files missing, unreadable, or a manifest that does not match."""


def check_version_folder(folder: Path) -> dict:
    """The manifest of a complete version folder; :class:`VersionError` naming what is wrong otherwise."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise VersionError(f"version folder {folder} is incomplete: missing {', '.join(missing)}")
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VersionError(f"version folder {folder}: unreadable manifest ({exc})") from None
    for name, size in manifest.get("files", {}).items():
        actual = (folder / name).stat().st_size if (folder / name).exists() else -1
        if actual != size:
            raise VersionError(f"version folder {folder}: {name} is {actual} bytes, the manifest says {size}")
    return manifest


class TrailOnnx:
    """Scores and explanations from one version folder."""

    def __init__(self, folder: Path, threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.manifest = check_version_folder(self.folder)
        # the layout the model was trained on: callers render prompts and cues in it (trail.prompt)
        self.prompt_format = check_prompt_format(self.manifest.get("prompt_format"), f"version folder {self.folder}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ("CUDAExecutionProvider", "CPUExecutionProvider")) if p in available]
        try:
            self.scorer = ort.InferenceSession(str(self.folder / SCORE_FILE), options, providers=chosen)
            self.generator = ort.InferenceSession(str(self.folder / GENERATOR_FILE), options, providers=chosen)
            self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise VersionError(f"version folder {self.folder} cannot be loaded: {exc}") from None
        self.limits = TokenLimits.from_manifest(self.manifest.get("limits"))
        self.eos_id = int(self.manifest.get("eos_token_id", 2))
        self.pad_id = int(self.manifest.get("pad_token_id", 2))
        self._generator_inputs = {i.name: i for i in self.generator.get_inputs()}
        self._generator_outputs = [o.name for o in self.generator.get_outputs()]
        self._layers = [layer for layer in range(len(self._generator_inputs))
                        if past_input(layer, "key") in self._generator_inputs]
        self.number_constraint = NumberConstraint.from_vocab(self.tokenizer.get_vocab())

    @property
    def providers(self) -> list[str]:
        return self.scorer.get_providers()

    def _ids(self, text: str, limit: int) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids[:limit]

    # -- scoring ------------------------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], features: np.ndarray, current_log_count: np.ndarray) -> np.ndarray:
        """Predicted ``log1p(next count)`` per prompt (one batch, right-padded)."""
        rows = [self._ids(prompt, self.limits.max_prompt_tokens) for prompt in prompts]
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        feeds = dict(zip(SCORE_INPUTS, (input_ids, mask, np.asarray(features, dtype=np.float32),
                                        np.asarray(current_log_count, dtype=np.float32))))
        return self.scorer.run([SCORE_OUTPUT], feeds)[0]

    # -- explanations -------------------------------------------------------------------------------------
    def explain(self, prompt: str, cue: str, max_new_tokens: int | None = None, decoding: Decoding = GREEDY) -> str:
        """One explanation: :meth:`explain_batch` of one row."""
        return self.explain_batch([prompt], [cue], [decoding], max_new_tokens)[0]

    def explain_batch(self, prompts: Sequence[str], cues: Sequence[str], decodings: Sequence[Decoding] | None = None,
                      max_new_tokens: int | None = None) -> list[str]:
        """Explanations of several items decoded together with the key/value cache: rows left-padded (attention
        mask and position ids skip the padding), one generator call per new token for the whole batch. Each row's
        next token is chosen by :func:`trail_decoding.next_token` with its own :class:`Decoding` (greedy gives
        the same tokens as PyTorch's greedy ``generate``; constrained rows may only write the numbers of their
        own prompt and cue)."""
        if not prompts:
            return []
        decodings = list(decodings) if decodings is not None else [GREEDY] * len(prompts)
        rows = [self._ids(p, self.limits.max_prompt_tokens) + self._ids(c, self.limits.max_cue_tokens)
                for p, c in zip(prompts, cues)]
        n, width = len(rows), max(len(row) for row in rows)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row):] = row
            mask[index, width - len(row):] = 1
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        decoders = [RowDecoder.for_item(d, self.number_constraint, p, c) for d, p, c in zip(decodings, prompts, cues)]
        past = self._empty_past(n)
        generated: list[list[int]] = [[] for _ in rows]
        active = np.arange(n)  # rows still writing; a finished row leaves the batch (and its cache)
        for _ in range(max_new_tokens or self.limits.max_new_tokens):
            feeds = {**dict(zip(GENERATOR_INPUTS, (input_ids, mask, positions))), **past}
            outputs = dict(zip(self._generator_outputs, self.generator.run(self._generator_outputs, feeds)))
            last = outputs[GENERATOR_LOGITS][:, -1]
            tokens = np.array([next_token(decoders[row], last[i]) for i, row in enumerate(active)], dtype=np.int64)
            going = tokens != self.eos_id
            for row, token in zip(active[going], tokens[going]):
                generated[row].append(int(token))
            if not going.any():
                break
            active, mask = active[going], mask[going]
            past = {past_input(layer, kind): outputs[present_output(layer, kind)][going]
                    for layer in self._layers for kind in KV_KINDS}
            input_ids = tokens[going][:, None]
            mask = np.concatenate([mask, np.ones((len(active), 1), dtype=np.int64)], axis=1)
            positions = (mask.sum(axis=1) - 1)[:, None]
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        past = {}
        for layer in self._layers:
            for kind in KV_KINDS:
                spec = self._generator_inputs[past_input(layer, kind)]
                heads, head_dim = spec.shape[1], spec.shape[3]
                past[past_input(layer, kind)] = np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
        return past
