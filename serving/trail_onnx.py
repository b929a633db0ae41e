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
    from trail_serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, IN_PLACE_CACHE_INPUTS, KV_KINDS,
                                        SCORE_INPUTS, SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
                                        present_output)
except ImportError:
    from trail.decoding import DRAFT_TOKENS, GREEDY, Decoding, NumberConstraint, RowDecoder, draft_from_source, next_token
    from trail.errors import TrailError
    from trail.serving_contract import (GENERATOR_INPUTS, GENERATOR_LOGITS, IN_PLACE_CACHE_INPUTS, KV_KINDS,
                                        SCORE_INPUTS, SCORE_OUTPUT, TokenLimits, check_prompt_format, past_input,
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
        # a generator exported with GroupQueryAttention writes its cache in place (_InPlaceCache); an older one
        # returns a new, concatenated cache at every step (_PaddedCache)
        self.in_place_cache = IN_PLACE_CACHE_INPUTS[0] in self._generator_inputs
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
        """Explanations of several items decoded together with the key/value cache, one generator call per step for
        the whole batch (each row prefilled alone first: :meth:`_prefill`). Each row's next token is chosen by
        :func:`trail_decoding.next_token` with its own :class:`Decoding` (greedy gives the same tokens as PyTorch's
        greedy ``generate``; constrained rows may only write the numbers of their own prompt and cue). How the rows'
        caches are laid out is the generator's: written in place with a length per row (:class:`_InPlaceCache`), or
        left-padded under an attention mask (:class:`_PaddedCache`, generators exported before).

        Prompt-lookup drafts (``draft_tokens`` > 0): each step also feeds, per row, up to ``draft_tokens`` tokens
        copied from its prompt and cue where the text so far continues them (:func:`draft_from_source`); the
        logits at every fed position are run through the row's decoder in order, and drafted tokens are kept
        while they are what the decoder chooses. Rejected positions leave the cache (masked out of a padded one,
        written over in an in-place one: ``keep``), so rows may keep different numbers of tokens. The chosen tokens
        are exactly those of one-token steps. ``draft_sources`` (token ids per row) replaces the prompt and cue as
        what drafts are copied from; ``drafts_kept`` counts the drafted tokens this call kept (each one a generator
        step saved)."""
        if not prompts:
            return []
        decodings = list(decodings) if decodings is not None else [GREEDY] * len(prompts)
        limit = max_new_tokens or self.limits.max_new_tokens
        rows = [self._ids(p, self.limits.max_prompt_tokens) + self._ids(c, self.limits.max_cue_tokens)
                for p, c in zip(prompts, cues)]
        sources = [list(source) for source in draft_sources] if draft_sources is not None else rows
        self.drafts_kept = 0
        decoders = [RowDecoder.for_item(d, self.number_constraint, p, c) for d, p, c in zip(decodings, prompts, cues)]
        prefilled = self._prefill(rows)
        cache = (_InPlaceCache(self, prefilled, limit + draft_tokens + 1) if self.in_place_cache
                 else _PaddedCache(self, prefilled))
        logits = np.stack([logit for logit, _ in prefilled])  # the first step: each prompt's last position
        input_ids, fed = np.zeros((len(rows), 1), dtype=np.int64), np.ones((len(rows), 1), dtype=np.int64)
        generated: list[list[int]] = [[] for _ in rows]
        active = np.arange(len(rows))  # rows still writing; a finished row leaves the batch (and its cache)
        while True:
            finished, last_tokens, drafts = [], [], []
            for i, row in enumerate(active):
                for position in np.flatnonzero(fed[i]):  # the row's fed positions: its last token, then its draft
                    token = next_token(decoders[row], logits[i, position])
                    if token == self.eos_id:
                        finished.append(True)
                        break
                    generated[row].append(token)
                    if len(generated[row]) >= limit:
                        finished.append(True)
                        break
                    following = position + 1
                    drafted = input_ids[i, following] if following < input_ids.shape[1] and fed[i, following] else None
                    if drafted != token:
                        cache.keep(i, following)  # positions after this one were drafted and rejected
                        finished.append(False)
                        break
                    self.drafts_kept += 1
                else:  # every draft kept (or nothing drafted): the last choice is not in the cache yet
                    finished.append(False)
                if not finished[-1]:
                    last_tokens.append(generated[row][-1])
                    drafts.append(draft_from_source(sources[row], generated[row], min(draft_tokens,
                                                                                  limit - len(generated[row]) - 1)))
            going = ~np.array(finished)
            if not going.any():
                break
            if not going.all():  # finished rows leave the batch (indexing copies every cache: only then)
                active = active[going]
                cache.drop(going)
            chunk = 1 + max(len(d) for d in drafts)
            input_ids = np.full((len(active), chunk), self.pad_id, dtype=np.int64)
            fed = np.zeros((len(active), chunk), dtype=np.int64)
            for i, (last, draft) in enumerate(zip(last_tokens, drafts)):
                input_ids[i, : 1 + len(draft)] = [last, *draft]
                fed[i, : 1 + len(draft)] = 1
            # a generator exported by this code returns logits for the last GENERATOR_LOGIT_POSITIONS fed positions
            # only (an older one for all of them): a step may feed no more
            logits = cache.step(input_ids, fed)
            if logits.shape[1] < chunk:
                raise TrailError(f"the generator returns logits for {logits.shape[1]} positions, a step fed {chunk}: "
                                 f"draft_tokens must be below {logits.shape[1]}")
        self.last_token_ids = generated
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]

    def _prefill(self, rows: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Per row, its last position's logits and its cache (``present`` name → [heads, positions, dim]), each row
        run alone, so no padding is run.

        Prompts plus facts are ~160-240 tokens: padded to the longest, a batch of 10 runs ~20% more positions, and
        its attention grows with the square of the width. On 2 cores the same 10 rows took 3.1-3.3 s one by one and
        3.4 s together (README, Measured results): a small gain, and no padded attention tensor.

        A row's prefill depends on its token ids alone, and the worker's decoding rounds
        (:func:`serving.explanations.explain_verified`) explain the same unverified items again with another
        :class:`Decoding`: so the rows of the last call are kept (~10 MB each, at most :data:`PREFILLS_KEPT`) and a
        row met again is taken from there, bit for bit what running it again would give."""
        names = [present_output(layer, kind) for layer in self._layers for kind in KV_KINDS]
        earlier, kept = self._prefilled if self.reuse_prefills else {}, {}
        entries = []
        for row in rows:
            key = tuple(row)
            entry = kept.get(key) or earlier.get(key)
            if entry is None:
                ids = np.asarray([row], dtype=np.int64)
                outputs = dict(zip(self._generator_outputs,
                                   self.generator.run(self._generator_outputs, self.prompt_feeds(ids))))
                # a copy: a view would keep the generator's whole logits output alive
                entry = (outputs[GENERATOR_LOGITS][0, -1:].copy(), {name: outputs[name][0] for name in names})
            else:
                self.prefills_reused += 1
            if len(kept) < PREFILLS_KEPT:
                kept[key] = entry
            entries.append(entry)
        self._prefilled = kept
        return entries

    def prompt_feeds(self, input_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The generator's inputs for unpadded rows of equal length read from an empty cache, in whichever inputs the
        generator declares (an in-place-cache generator reads lengths instead of a mask)."""
        batch, width = input_ids.shape
        everything = {GENERATOR_INPUTS[0]: input_ids, GENERATOR_INPUTS[1]: np.ones_like(input_ids),
                      GENERATOR_INPUTS[2]: np.tile(np.arange(width, dtype=np.int64), (batch, 1)),
                      IN_PLACE_CACHE_INPUTS[0]: np.full(batch, width - 1, dtype=np.int32),
                      IN_PLACE_CACHE_INPUTS[1]: np.array(width, dtype=np.int32), **self._empty_past(batch)}
        return {name: value for name, value in everything.items() if name in self._generator_inputs}

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        past = {}
        for layer in self._layers:
            for kind in KV_KINDS:
                spec = self._generator_inputs[past_input(layer, kind)]
                heads, head_dim = spec.shape[1], spec.shape[3]
                past[past_input(layer, kind)] = np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
        return past


class _PaddedCache:
    """The cache of a generator exported before the in-place one (optimum's layout): rows left-padded to one width,
    an attention mask over every position (padding and rejected drafts 0), position ids counted from the mask, and
    a new cache returned by every step (the graph concatenates the old one with the new positions)."""

    def __init__(self, runner: TrailOnnx, prefilled: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]]) -> None:
        self.runner = runner
        widths = [next(iter(caches.values())).shape[1] for _, caches in prefilled]
        width = max(widths)
        self.mask = np.zeros((len(prefilled), width), dtype=np.int64)
        for index, length in enumerate(widths):
            self.mask[index, width - length:] = 1
        self.past = {past_input(*_layer_and_kind(name)): cache
                     for name, cache in _stacked(prefilled, width, right_aligned=True).items()}
        self.chunk = 0

    def step(self, input_ids: np.ndarray, fed: np.ndarray) -> np.ndarray:
        runner, self.chunk = self.runner, input_ids.shape[1]
        positions = self.mask.sum(axis=1, keepdims=True) + np.arange(self.chunk)[None, :]
        self.mask = np.concatenate([self.mask, fed], axis=1)
        feeds = {**dict(zip(GENERATOR_INPUTS, (input_ids, self.mask, positions))), **self.past}
        outputs = dict(zip(runner._generator_outputs, runner.generator.run(runner._generator_outputs, feeds)))
        self.past = {past_input(layer, kind): outputs[present_output(layer, kind)]
                     for layer in runner._layers for kind in KV_KINDS}
        return outputs[GENERATOR_LOGITS]

    def keep(self, row: int, positions: int) -> None:
        """Only the first ``positions`` of the last step's positions of ``row`` stay: the rest are masked out."""
        if self.chunk:
            self.mask[row, self.mask.shape[1] - self.chunk + positions:] = 0

    def drop(self, going: np.ndarray) -> None:
        self.mask = self.mask[going]
        self.past = {name: cache[going] for name, cache in self.past.items()}


class _InPlaceCache:
    """The cache of a generator whose attention is ``GroupQueryAttention``: one buffer per layer and kind, [rows,
    heads, capacity, dim], bound as both the past and the present, so a step writes only its new positions; each row
    is its own length from position 0 (``seqlens_k``), so nothing is padded or masked. A rejected draft is dropped
    by not counting it: the next step writes over it."""

    def __init__(self, runner: TrailOnnx, prefilled: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]],
                 room: int) -> None:
        import onnxruntime as ort

        self.runner, self._ort = runner, ort
        self.lengths = np.array([next(iter(caches.values())).shape[1] for _, caches in prefilled], dtype=np.int64)
        self.buffers = _stacked(prefilled, int(self.lengths.max()) + room, right_aligned=False)
        self._bind_buffers()
        self.before = self.lengths
        self.chunk = 0  # positions fed by the last step (none yet: the prefill's are all the row's own)

    def _bind_buffers(self) -> None:
        # ORT reads and writes the numpy buffers themselves (no copy)
        self.values = {name: self._ort.OrtValue.ortvalue_from_numpy(buffer) for name, buffer in self.buffers.items()}

    def step(self, input_ids: np.ndarray, fed: np.ndarray) -> np.ndarray:
        chunk = input_ids.shape[1]
        if chunk > 1 and len(input_ids) > 1:
            # ORT's GroupQueryAttention on the CPU reads several new positions on top of a cache at batch 1 only:
            # a drafted step (drafts are off by default) runs row by row, on each row's part of the buffers
            logits = [self._run(input_ids[i:i + 1], self.lengths[i:i + 1],
                                {name: self._ort.OrtValue.ortvalue_from_numpy(buffer[i:i + 1])
                                 for name, buffer in self.buffers.items()}) for i in range(len(input_ids))]
            out = np.concatenate(logits)
        else:
            out = self._run(input_ids, self.lengths, self.values)
        self.before, self.chunk = self.lengths, chunk
        self.lengths = self.lengths + fed.sum(axis=1)  # padding after a row's fed tokens is written over next step
        return out

    def _run(self, input_ids: np.ndarray, lengths: np.ndarray, caches: dict) -> np.ndarray:
        generator, chunk = self.runner.generator, input_ids.shape[1]
        binding = generator.io_binding()
        # named, so they outlive the call that reads them
        feeds = {GENERATOR_INPUTS[0]: input_ids,
                 GENERATOR_INPUTS[2]: lengths[:, None] + np.arange(chunk, dtype=np.int64)[None, :],
                 IN_PLACE_CACHE_INPUTS[0]: (lengths + chunk - 1).astype(np.int32),
                 IN_PLACE_CACHE_INPUTS[1]: np.array(lengths.max() + chunk, dtype=np.int32)}
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(GENERATOR_LOGITS)  # the first output bound: get_outputs()[0]
        for name, value in caches.items():
            binding.bind_ortvalue_input(past_input(*_layer_and_kind(name)), value)
            binding.bind_ortvalue_output(name, value)
        generator.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def keep(self, row: int, positions: int) -> None:
        """Only the first ``positions`` of the last step's positions of ``row`` count."""
        if self.chunk:
            self.lengths[row] = self.before[row] + positions

    def drop(self, going: np.ndarray) -> None:
        self.lengths, self.before = self.lengths[going], self.before[going]
        self.buffers = {name: buffer[going] for name, buffer in self.buffers.items()}
        self._bind_buffers()


def _stacked(prefilled: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]], width: int,
             right_aligned: bool) -> dict[str, np.ndarray]:
    """The rows' prefilled caches in one [rows, heads, ``width``, dim] array per ``present`` name, each row's
    positions at the end (a left-padded batch) or from position 0 (an in-place buffer with room after), zeros
    elsewhere."""
    stacked = {}
    for name, first in prefilled[0][1].items():
        heads, _, head_dim = first.shape
        array = np.zeros((len(prefilled), heads, width, head_dim), dtype=first.dtype)
        for index, (_, caches) in enumerate(prefilled):
            length = caches[name].shape[1]
            if right_aligned:
                array[index, :, width - length:] = caches[name]
            else:
                array[index, :, :length] = caches[name]
        stacked[name] = array
    return stacked


def _layer_and_kind(present: str) -> tuple[int, str]:
    """``present.3.key`` → (3, "key"): the past input a present output continues."""
    _, layer, kind = present.split(".")
    return int(layer), kind
