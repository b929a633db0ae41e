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
    from trail_decoding import DRAFT_TOKENS, GREEDY, Decoding, NumberConstraint, RowDecoder, draft_from_source, next_token
    from trail_errors import TrailError
    from trail_serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, KV_KINDS, SCORE_INPUTS,
                                        SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
                                        present_output)
except ImportError:
    from trail.decoding import DRAFT_TOKENS, GREEDY, Decoding, NumberConstraint, RowDecoder, draft_from_source, next_token
    from trail.errors import TrailError
    from trail.serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, KV_KINDS, SCORE_INPUTS,
                                        SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
                                        present_output)

__all__ = ["SCORE_FILE", "GENERATOR_FILE", "TOKENIZER_FILE", "MANIFEST_FILE", "TrailOnnx", "VersionError", "check_version_folder",
           "write_manifest"]

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


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest`` as ``folder``'s manifest, its ``files`` sizes taken from the folder as it is now: the sizes
    :func:`check_version_folder` compares, so a folder whose files change (a graph quantised, a generator replaced)
    is written again through here."""
    manifest["files"] = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


# Rows of the last explain_batch whose prefill is kept for the next (~10 MB each for SmolLM2-135M at ~200 tokens):
# the worker explains a window's top 10-20, in one call per decoding round; a larger call keeps its first rows only.
PREFILLS_KEPT = 32


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
        self.drafts_kept = 0  # drafted tokens the last explain_batch kept
        # token ids of a row → its last-position logits and cache: the rows the last explain_batch prefilled (see
        # _prefill); prefills_reused counts the rows a call took from there instead of running the generator
        self._prefilled: dict[tuple[int, ...], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self.prefills_reused = 0
        self.reuse_prefills = True  # False: every call prefills every row (a benchmark's cold baseline)
        self.last_token_ids: list[list[int]] = []  # the token ids of the last explain_batch's texts

    @property
    def providers(self) -> list[str]:
        return self.scorer.get_providers()

    def forget_prefills(self) -> None:
        """Drop the rows kept from the last :meth:`explain_batch` (a benchmark's timed call starts cold)."""
        self._prefilled = {}

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
                      max_new_tokens: int | None = None, draft_tokens: int = DRAFT_TOKENS,
                      draft_sources: Sequence[Sequence[int]] | None = None) -> list[str]:
        """Explanations of several items decoded together with the key/value cache: rows left-padded (attention
        mask and position ids skip the padding), one generator call per step for the whole batch. Each row's
        next token is chosen by :func:`trail_decoding.next_token` with its own :class:`Decoding` (greedy gives
        the same tokens as PyTorch's greedy ``generate``; constrained rows may only write the numbers of their
        own prompt and cue).

        Prompt-lookup drafts (``draft_tokens`` > 0): each step also feeds, per row, up to ``draft_tokens`` tokens
        copied from its prompt and cue where the text so far continues them (:func:`draft_from_source`); the
        logits at every fed position are run through the row's decoder in order, and drafted tokens are kept
        while they are what the decoder chooses. Rejected positions stay in the cache, masked out, so rows may
        keep different numbers of tokens. The chosen tokens are exactly those of one-token steps. ``draft_sources``
        (token ids per row) replaces the prompt and cue as what drafts are copied from; ``drafts_kept`` counts the
        drafted tokens this call kept (each one a generator step saved)."""
        if not prompts:
            return []
        decodings = list(decodings) if decodings is not None else [GREEDY] * len(prompts)
        limit = max_new_tokens or self.limits.max_new_tokens
        rows = [self._ids(p, self.limits.max_prompt_tokens) + self._ids(c, self.limits.max_cue_tokens)
                for p, c in zip(prompts, cues)]
        n, width = len(rows), max(len(row) for row in rows)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row):] = row
            mask[index, width - len(row):] = 1
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        sources = [list(source) for source in draft_sources] if draft_sources is not None else rows
        self.drafts_kept = 0
        fed = mask.copy()  # 1 where a fed position holds a real token (not padding)
        decoders = [RowDecoder.for_item(d, self.number_constraint, p, c) for d, p, c in zip(decodings, prompts, cues)]
        past = self._empty_past(n)
        generated: list[list[int]] = [[] for _ in rows]
        active = np.arange(n)  # rows still writing; a finished row leaves the batch (and its cache)
        prefill = True  # the first step reads only the prompt's last position; later ones every fed position
        while True:
            if prefill:
                outputs = self._prefill(rows, width)
            else:
                feeds = {**dict(zip(GENERATOR_INPUTS, (input_ids, mask, positions))), **past}
                outputs = dict(zip(self._generator_outputs, self.generator.run(self._generator_outputs, feeds)))
            logits, step = outputs[GENERATOR_LOGITS], input_ids.shape[1]
            # a generator exported by this code returns logits for the last GENERATOR_LOGIT_POSITIONS positions
            # only (an older one for all): position p of this step's input is logits[:, p - offset]
            offset = step - logits.shape[1]
            if offset and not prefill:
                raise TrailError(f"the generator returns logits for {logits.shape[1]} positions, a step fed {step}: "
                                 f"draft_tokens must be below {logits.shape[1]}")
            finished, last_tokens, drafts = [], [], []
            for i, row in enumerate(active):
                real = np.flatnonzero(fed[i])  # the row's fed positions: its last token, then its draft
                for position in real[-1:] if prefill else real:
                    token = next_token(decoders[row], logits[i, position - offset])
                    if token == self.eos_id:
                        finished.append(True)
                        break
                    generated[row].append(token)
                    if len(generated[row]) >= limit:
                        finished.append(True)
                        break
                    drafted = input_ids[i, position + 1] if position + 1 < step and fed[i, position + 1] else None
                    if drafted != token:
                        # positions after this one were drafted and rejected: out of the cache for good
                        mask[i, mask.shape[1] - step + position + 1:] = 0
                        finished.append(False)
                        break
                    self.drafts_kept += 1
                else:  # every draft kept (or nothing drafted): the last choice is not in the cache yet
                    finished.append(False)
                if not finished[-1]:
                    last_tokens.append(generated[row][-1])
                    drafts.append(draft_from_source(sources[row], generated[row], min(draft_tokens,
                                                                                  limit - len(generated[row]) - 1)))
            prefill, going = False, ~np.array(finished)
            if not going.any():
                break
            past = {past_input(layer, kind): outputs[present_output(layer, kind)]
                    for layer in self._layers for kind in KV_KINDS}
            if not going.all():  # finished rows leave the batch (indexing copies every cache: only then)
                active, mask = active[going], mask[going]
                past = {name: cache[going] for name, cache in past.items()}
            chunk = 1 + max(len(d) for d in drafts)
            input_ids = np.full((len(active), chunk), self.pad_id, dtype=np.int64)
            fed = np.zeros((len(active), chunk), dtype=np.int64)
            for i, (last, draft) in enumerate(zip(last_tokens, drafts)):
                input_ids[i, : 1 + len(draft)] = [last, *draft]
                fed[i, : 1 + len(draft)] = 1
            positions = mask.sum(axis=1, keepdims=True) + np.arange(chunk)[None, :]
            mask = np.concatenate([mask, fed], axis=1)
        self.last_token_ids = generated
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]

    def _prefill(self, rows: Sequence[Sequence[int]], width: int) -> dict[str, np.ndarray]:
        """What one generator call on the left-padded batch of ``rows`` returns — each row's last-position logits
        and its cache, right-aligned in ``width`` positions — computed one row at a time, so no padding is run.

        Prompts plus facts are ~160-240 tokens: padded to the longest, a batch of 10 runs ~20% more positions, and
        its attention grows with the square of the width. On 2 cores the same 10 rows took 3.1-3.3 s one by one and
        3.4 s together (README, Measured results): a small gain, and no padded attention tensor.

        A row's prefill depends on its token ids alone, and the worker's decoding rounds
        (:func:`serving.explanations.explain_verified`) explain the same unverified items again with another
        :class:`Decoding`: so the rows of the last call are kept (~10 MB each, at most :data:`PREFILLS_KEPT`) and a
        row met again is taken from there, bit for bit what running it again would give."""
        n = len(rows)
        logits: list[np.ndarray] = []
        names = [present_output(layer, kind) for layer in self._layers for kind in KV_KINDS]
        caches: dict[str, list[np.ndarray]] = {name: [] for name in names}
        earlier, kept = self._prefilled if self.reuse_prefills else {}, {}
        for row in rows:
            key = tuple(row)
            entry = kept.get(key) or earlier.get(key)
            if entry is None:
                ids = np.asarray([row], dtype=np.int64)
                feeds = {**dict(zip(GENERATOR_INPUTS, (ids, np.ones_like(ids), np.arange(len(row))[None, :]))),
                         **self._empty_past(1)}
                outputs = dict(zip(self._generator_outputs, self.generator.run(self._generator_outputs, feeds)))
                # a copy: a view would keep the generator's whole logits output alive
                entry = (outputs[GENERATOR_LOGITS][0, -1:].copy(), {name: outputs[name][0] for name in names})
            else:
                self.prefills_reused += 1
            if len(kept) < PREFILLS_KEPT:
                kept[key] = entry
            logits.append(entry[0])
            for name in names:
                caches[name].append(entry[1][name])
        self._prefilled = kept
        out = {GENERATOR_LOGITS: np.stack(logits)}
        for name, cache in caches.items():
            heads, _, head_dim = cache[0].shape
            padded = np.zeros((n, heads, width, head_dim), dtype=cache[0].dtype)
            for index, row_cache in enumerate(cache):
                padded[index, :, width - row_cache.shape[1]:] = row_cache
            out[name] = padded
        return out

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        past = {}
        for layer in self._layers:
            for kind in KV_KINDS:
                spec = self._generator_inputs[past_input(layer, kind)]
                heads, head_dim = spec.shape[1], spec.shape[3]
                past[past_input(layer, kind)] = np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
        return past
