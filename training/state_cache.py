"""Tensors computed from a fixed LLM, kept on disk between runs: prompt states (one entry per window's prompts,
written and read by ``trail refit-head`` and ``trail evaluate``) and the int8 guard's states.

The key is the sha256 of its parts — always the LLM's digest (:func:`training.model.llm_digest`) and the prompts —
so other weights or other prompts never read an entry. Entries are written atomically: an interrupted run never
leaves a truncated file behind, and two runs writing one entry at once never mix their bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # torch loads only where a tensor is made: `trail`'s argument parser imports this module
    import torch

__all__ = ["DEFAULT_STATES_CACHE", "cached_rows", "cached_tensor", "states_cache_option"]

# where `trail refit-head` and `trail evaluate` keep prompt states unless told otherwise: one folder, so an
# evaluation of a refit reads the states the refit computed
DEFAULT_STATES_CACHE = Path(".trail-data/prompt-states")


def cached_tensor(cache: Path | None, key_parts: Sequence[str], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()``, or what an earlier call with the same ``key_parts`` stored under ``cache`` (None: no cache)."""
    from safetensors.torch import load_file, save_file

    if cache is None:
        return compute()
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:32]
    path = Path(cache) / f"{key}.safetensors"
    if path.exists():
        return load_file(str(path))["hidden"]
    tensor = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".partial")  # one per writer
    os.close(handle)
    try:
        save_file({"hidden": tensor.contiguous()}, partial)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    return tensor


def states_cache_option(value: Path) -> Path | None:
    """A ``--states-cache`` argument: ``''`` (or ``.``) keeps none."""
    return value if str(value) not in ("", ".") else None


def cached_rows(cache: Path | None, llm_key: str, prompts: Sequence[str],
                compute: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """One row per prompt, in ``prompts``' order: ``compute(distinct)`` of the distinct prompts in sorted order, or
    what an earlier call over the same set of prompts stored (None or no ``llm_key``: no cache).

    The entry is keyed by the set, not the order: a refit's validation window and ``trail evaluate``'s scoring of
    the same window's candidates read one entry whatever order each builds its list in.

    >>> import torch
    >>> rows = cached_rows(None, "", ["b", "a", "b"], lambda ps: torch.tensor([[float(ord(p))] for p in ps]))
    >>> rows.squeeze(1).tolist()
    [98.0, 97.0, 98.0]
    """
    import torch

    distinct = sorted(set(prompts))
    block = cached_tensor(cache if llm_key else None, [llm_key, *distinct], lambda: compute(distinct))
    row_of = {prompt: row for row, prompt in enumerate(distinct)}
    return block[torch.tensor([row_of[p] for p in prompts], dtype=torch.long)]
