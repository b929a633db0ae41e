"""Tensors computed from a fixed LLM, kept on disk between runs (prompt states of a refit, their int8 twins).

The key is the sha256 of its parts — always the LLM's digest (:func:`training.model.llm_digest`) and the prompts —
so other weights or other prompts never read an entry. Entries are written atomically: an interrupted run never
leaves a truncated file behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = ["cached_tensor"]


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
    partial = path.with_suffix(".partial")
    save_file({"hidden": tensor.contiguous()}, str(partial))
    partial.replace(path)
    return tensor
