"""What training, the exporter, the ONNX runner and the Triton model must agree on, defined once.

The prompt layout's version, the token limits of the prompt, the cue and the explanation, and the names of the
exported graphs' inputs and outputs. A checkpoint records the prompt format and the export manifest records both
the format and the limits, so a version folder says how it must be fed; :func:`check_prompt_format` refuses a
model trained on another layout than the one this code renders.

This module needs only the standard library and :mod:`trail.errors`: it is copied into every exported version
folder (as ``trail_serving_contract.py``) for the Triton model, which cannot import the ``trail`` package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

try:  # inside a Triton version folder, next to trail_errors.py
    from trail_errors import TrailError
except ImportError:
    from trail.errors import TrailError

__all__ = ["GENERATOR_INPUTS", "GENERATOR_LOGITS", "GENERATOR_LOGIT_POSITIONS", "IN_PLACE_CACHE_INPUTS", "KV_KINDS",
           "PROMPT_FORMAT", "PROMPT_FORMATS", "SCORE_INPUTS",
           "SCORE_OUTPUT", "TOKEN_LIMITS", "PromptFormatMismatch", "TokenLimits", "check_prompt_format",
           "limits_for_format", "past_input", "present_output"]

# The layouts of the prompt and cue (trail.prompt). A model can only read the layout it was trained on, so every
# runtime renders the format its model records; training writes the newest.
#   1: signals; cue = forecast line.
#   2: adds the calendar line to the prompt, and the item's facts in the composer's words to the cue.
PROMPT_FORMATS = (1, 2)
PROMPT_FORMAT = PROMPT_FORMATS[-1]


@dataclass(frozen=True)
class TokenLimits:
    """Tokens kept of each segment, in training and in every runtime (longer segments are cut, never wrapped)."""

    max_prompt_tokens: int = 160
    max_cue_tokens: int = 16  # the forecast line, the facts (format 2) and the cue
    max_new_tokens: int = 72  # an explanation's length

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_manifest(cls, limits: Mapping[str, Any] | None) -> TokenLimits:
        """The limits a version was exported with (a key an older manifest lacks keeps this code's default)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in (limits or {}).items() if k in known})


def limits_for_format(prompt_format: int) -> TokenLimits:
    """Format 1's cue is the forecast line (16 tokens); format 2's also lists the facts (up to 128)."""
    return TokenLimits(max_cue_tokens=16 if prompt_format == 1 else 128)


TOKEN_LIMITS = limits_for_format(PROMPT_FORMAT)

# the scoring graph: prompt tokens + engineered features + log1p(current count) → log1p(next window's count)
SCORE_INPUTS = ("input_ids", "attention_mask", "features", "current_log_count")
SCORE_OUTPUT = "log_count"
# the generator: a causal LM with past key values (``past_input`` in, ``present_output`` out, per layer)
GENERATOR_INPUTS = ("input_ids", "attention_mask", "position_ids")
GENERATOR_LOGITS = "logits"
# The exported generator returns logits for the last this many fed positions only: the prefill needs the prompt's
# last one, a draft step feeds 1 + trail.decoding.DRAFT_TOKENS. The vocabulary projection of every other prompt
# position was a fifth of the prefill's work and, for 20 rows of ~300 tokens, a 1.2 GB logits tensor.
GENERATOR_LOGIT_POSITIONS = 8
KV_KINDS = ("key", "value")
# A generator whose attention is ORT's GroupQueryAttention (training.generator_graph.fuse_grouped_query_attention)
# reads these two instead of the attention mask: per row, the cached positions plus this step's (minus one), and
# the longest row's total. Its cache is written in place: past and present are one buffer per layer.
IN_PLACE_CACHE_INPUTS = ("seqlens_k", "total_sequence_length")


def past_input(layer: int, kind: str) -> str:
    """``kind`` is one of :data:`KV_KINDS`."""
    return f"past_key_values.{layer}.{kind}"


def present_output(layer: int, kind: str) -> str:
    return f"present.{layer}.{kind}"


class PromptFormatMismatch(TrailError, ValueError):
    """A model trained on another prompt layout than the one this code renders."""


def check_prompt_format(found: int | None, what: str) -> int:
    """The format ``found`` (None: recorded before formats were: 1) if this code renders it, else raise
    :class:`PromptFormatMismatch`."""
    found = int(found or 1)
    if found not in PROMPT_FORMATS:
        raise PromptFormatMismatch(f"{what} was trained on prompt format {found}, this code renders formats "
                                   f"{', '.join(map(str, PROMPT_FORMATS))}: retrain it (`make train`) or run the "
                                   f"code it was made with")
    return found
