"""The TRAIL model: a causal LM with LoRA adapters, a score head and two projections for contrastive alignment.

One forward pass over ``prompt · forecast cue · explanation`` gives everything training needs: the hidden state at
the prompt's last token feeds the score head (a causal model's state there has seen the signals and nothing
after them, so the score never peeks at the forecast line or the explanation), and the logits over the
explanation give its likelihood. Serving reads the score from a forward over the prompt alone and generates the
explanation after ``render_explanation_prompt(signals, predicted count)``.

The score head predicts ``log1p(next count)`` as a correction to ``log1p(this window's count)`` from the prompt's
hidden state and the item's numeric features (:func:`trail.features.model_features`): the numbers the prompt
shows as text, given to the head exactly, so the LLM's part is what the text adds.

A checkpoint is a Hugging Face-style folder: ``adapter/`` (peft), ``heads.safetensors``, ``trail_config.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from trail.decoding import GREEDY, Decoding, NumberConstraint, RowDecoder, next_token
from trail.features import FEATURE_NAMES, model_features
from trail.prompt import PROMPT_FORMAT, check_prompt_format, explanation_cue, render_prompt
from trail.serving_contract import TOKEN_LIMITS, limits_for_format
from trail.signals import TrendSignals

from .backbone import Backbone, load_backbone
from .checkpoint_files import CONFIG_FILE, require_checkpoint

__all__ = ["Encoded", "TrailConfig", "TrailModel", "explanation_target", "head_inputs", "llm_digest"]

HEADS_FILE = "heads.safetensors"
ADAPTER_FOLDER = "adapter"


_HEAD_ONLY_CONFIG = ("head_hidden", "projection_dim")  # config fields the prompt states do not depend on


def llm_digest(checkpoint: Path) -> str:
    """sha256 over the adapter's files and the model config but its head sizes: what the prompt states depend on
    (not the heads, so a refit that widens the score head keeps its LLM's cached states)."""
    checkpoint = Path(checkpoint)
    digest = hashlib.sha256()
    for path in sorted((checkpoint / ADAPTER_FOLDER).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(checkpoint).as_posix().encode() + b"\0" + path.read_bytes())
    config = json.loads((checkpoint / CONFIG_FILE).read_text())
    llm_part = {key: value for key, value in config.items() if key not in _HEAD_ONLY_CONFIG}
    digest.update(CONFIG_FILE.encode() + b"\0" + json.dumps(llm_part, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class TrailConfig:
    backbone: str = "smollm2"
    backbone_seed: int = 0  # the tiny test backbone's random weights are rebuilt from it
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    head_hidden: int = 128
    projection_dim: int = 64
    max_prompt_tokens: int = TOKEN_LIMITS.max_prompt_tokens
    max_explanation_tokens: int = TOKEN_LIMITS.max_new_tokens
    prompt_format: int = PROMPT_FORMAT  # trail.prompt's layout the model is trained on
    max_cue_tokens: int = TOKEN_LIMITS.max_cue_tokens  # the forecast line, facts and cue (the format's limit)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrailConfig":
        data = json.loads(text)
        data["lora_targets"] = tuple(data["lora_targets"])
        data.setdefault("prompt_format", 1)  # checkpoints saved before the format was recorded
        data.setdefault("max_cue_tokens", limits_for_format(data["prompt_format"]).max_cue_tokens)
        return cls(**data)

    def render_prompt(self, signals: TrendSignals) -> str:
        """The scoring prompt in this model's format."""
        return render_prompt(signals, self.prompt_format)

    def explanation_cue(self, signals: TrendSignals, predicted_count: float) -> str:
        """The explanation cue in this model's format."""
        return explanation_cue(signals, predicted_count, self.prompt_format)


def head_inputs(signals: Sequence[TrendSignals]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the score head reads besides the LLM: the numeric features and ``log1p`` of this window's count."""
    features = torch.from_numpy(model_features(signals))
    current = torch.log1p(torch.tensor([s.item.count for s in signals], dtype=torch.float32))
    return features, current


def explanation_target(explanation: str, eos_token: str) -> str:
    """What the LM learns to write after the cue: a space, the explanation, end of turn."""
    return " " + explanation.strip() + eos_token


@dataclass
class Encoded:
    """A right-padded batch of token sequences with the positions the losses read."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    score_index: torch.Tensor  # (B,) position of the prompt's last token (-1 placeholder when not scoring)
    continuation_mask: torch.Tensor  # (B, T) 1 where a token belongs to the continuation (explanation)
    lengths: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


class ScoreHead(nn.Module):
    def __init__(self, hidden_size: int, n_features: int, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(nn.Linear(hidden_size + n_features, width), nn.GELU(), nn.Linear(width, 1))
        nn.init.zeros_(self.mlp[2].weight)  # starts as "next = this window": a sane score before any training
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, hidden: torch.Tensor, features: torch.Tensor, current_log_count: torch.Tensor) -> torch.Tensor:
        correction = self.mlp(torch.cat([self.norm(hidden), features], dim=-1)).squeeze(-1)
        return current_log_count + correction


class TrailModel(nn.Module):
    def __init__(self, backbone: Backbone, config: TrailConfig, adapter: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = backbone.tokenizer
        if adapter is not None:
            self.lm = PeftModel.from_pretrained(backbone.model, str(adapter), is_trainable=True)
        else:
            lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=list(config.lora_targets), task_type="CAUSAL_LM")
            self.lm = get_peft_model(backbone.model, lora)
        hidden = backbone.model.config.hidden_size
        self.score_head = ScoreHead(hidden, len(FEATURE_NAMES), config.head_hidden)
        self.signal_projection = nn.Linear(hidden, config.projection_dim)
        self.text_projection = nn.Linear(hidden, config.projection_dim)
        self._number_constraint: NumberConstraint | None = None  # built from the vocabulary on first use

    # -- building and saving ------------------------------------------------------------------------------
    @classmethod
    def create(cls, config: TrailConfig, seed: int = 0) -> "TrailModel":
        torch.manual_seed(seed)
        return cls(load_backbone(config.backbone, seed=config.backbone_seed), config)

    @classmethod
    def load(cls, folder: Path) -> "TrailModel":
        """A saved checkpoint (``save``'s folder), in eval mode."""
        folder = require_checkpoint(Path(folder))
        config = TrailConfig.from_json((folder / CONFIG_FILE).read_text())
        check_prompt_format(config.prompt_format, f"checkpoint {folder}")
        backbone = load_backbone(config.backbone, seed=config.backbone_seed)
        model = cls(backbone, config, adapter=folder / ADAPTER_FOLDER)
        heads = load_file(str(folder / HEADS_FILE))
        model.head_modules().load_state_dict(heads)
        model.eval()
        return model

    def head_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"score_head": self.score_head, "signal_projection": self.signal_projection,
                              "text_projection": self.text_projection})

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(str(folder / ADAPTER_FOLDER))
        state = {k: v.detach().contiguous() for k, v in self.head_modules().state_dict().items()}
        save_file(state, str(folder / HEADS_FILE))
        (folder / CONFIG_FILE).write_text(self.config.to_json() + "\n")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- encoding -----------------------------------------------------------------------------------------
    def _ids(self, text: str, limit: int) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids[:limit]

    def encode(self, prompts: Sequence[str], cues: Sequence[str] | None = None,
               continuations: Sequence[str] | None = None) -> Encoded:
        """Segments tokenised separately and concatenated (serving does the same, so token boundaries match)."""
        rows: list[list[int]] = []
        score_index: list[int] = []
        continuation_spans: list[tuple[int, int]] = []
        for position, prompt in enumerate(prompts):
            ids = self._ids(prompt, self.config.max_prompt_tokens) if prompt else []
            score_index.append(len(ids) - 1)
            if cues is not None:
                ids += self._ids(cues[position], self.config.max_cue_tokens)
            start = len(ids)
            if continuations is not None:
                ids += self._ids(continuations[position], self.config.max_explanation_tokens)
            continuation_spans.append((start, len(ids)))
            rows.append(ids)
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        continuation = torch.zeros((len(rows), width), dtype=torch.long)
        for row_index, (row, (start, end)) in enumerate(zip(rows, continuation_spans)):
            input_ids[row_index, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention[row_index, : len(row)] = 1
            continuation[row_index, start:end] = 1
        return Encoded(input_ids, attention, torch.tensor(score_index), continuation,
                       torch.tensor([len(r) for r in rows]))

    # -- forward pieces -----------------------------------------------------------------------------------
    def hidden_states(self, batch: Encoded) -> torch.Tensor:
        """The backbone's final (normalised) hidden states, (B, T, H), without the vocabulary projection."""
        decoder = self.lm.get_base_model().model
        return decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).last_hidden_state

    def continuation_log_probs(self, hidden: torch.Tensor, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of every continuation token given what precedes it, and the row it belongs to.

        The vocabulary projection (49k wide for SmolLM2) runs only at the positions that predict a continuation
        token, not over the whole prompt: most of a sequence is prompt, and this is the costliest matmul."""
        targets_mask = batch.continuation_mask[:, 1:].bool()
        rows, positions = targets_mask.nonzero(as_tuple=True)
        logits = self.lm.get_base_model().lm_head(hidden[rows, positions])
        targets = batch.input_ids[rows, positions + 1]
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return log_probs, rows

    def score_from_hidden(self, hidden: torch.Tensor, batch: Encoded, signals: Sequence[TrendSignals]) -> torch.Tensor:
        """Predicted ``log1p(next count)`` per row, read at ``batch.score_index``."""
        rows = torch.arange(hidden.shape[0])
        at_prompt_end = hidden[rows, batch.score_index]
        return self.score_head(at_prompt_end, *head_inputs(signals))

    def signal_embedding(self, hidden: torch.Tensor, batch: Encoded) -> torch.Tensor:
        rows = torch.arange(hidden.shape[0])
        return self.signal_projection(hidden[rows, batch.score_index])

    def text_embedding(self, hidden: torch.Tensor, batch: Encoded) -> torch.Tensor:
        """Mean of the hidden states over the continuation tokens, projected."""
        mask = batch.continuation_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.text_projection(pooled)

    # -- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt_states(self, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """The hidden state at each prompt's last token, (N, H): all the score head reads from the LLM. Prompts are
        batched by length, so little padding is computed (right padding under a causal mask changes no state)."""
        states = torch.zeros((len(prompts), self.lm.get_base_model().config.hidden_size))
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            batch = self.encode([prompts[i] for i in chunk])
            hidden = self.hidden_states(batch)
            states[torch.tensor(chunk)] = hidden[torch.arange(len(chunk)), batch.score_index].float()
        return states

    @torch.no_grad()
    def score_states(self, states: torch.Tensor, signals: Sequence[TrendSignals]) -> np.ndarray:
        """``log1p`` of the predicted next count from prompt states (:meth:`prompt_states`) and the items' signals."""
        return self.score_head(states, *head_inputs(signals)).float().numpy()

    def predict_log_counts(self, signals: Sequence[TrendSignals], batch_size: int = 16) -> np.ndarray:
        """``log1p`` of the predicted next-window count of each item (prompt-only forwards)."""
        if not signals:
            return np.zeros(0, dtype=np.float32)
        states = self.prompt_states([self.config.render_prompt(s) for s in signals], batch_size)
        return self.score_states(states, signals)

    def predict_counts(self, signals: Sequence[TrendSignals], batch_size: int = 16) -> np.ndarray:
        return np.clip(np.expm1(self.predict_log_counts(signals, batch_size).astype(np.float64)), 0.0, None)

    @torch.no_grad()
    def explain(self, signals: Sequence[TrendSignals], predicted_counts: Sequence[float],
                max_new_tokens: int | None = None, decoding: Decoding = GREEDY) -> list[str]:
        """Explanations, each conditioned on its item's predicted count, one sequence at a time with the key/value
        cache; every next token is chosen by :func:`trail.decoding.next_token`, as the ONNX runner does, so a
        decoding gives the same text on both paths."""
        limit = max_new_tokens or self.config.max_explanation_tokens
        if self._number_constraint is None:
            self._number_constraint = NumberConstraint.from_vocab(self.tokenizer.get_vocab())
        texts = []
        for item, predicted in zip(signals, predicted_counts):
            prompt, cue = self.config.render_prompt(item), self.config.explanation_cue(item, predicted)
            row = RowDecoder.for_item(decoding, self._number_constraint, prompt, cue)
            input_ids = self.encode([prompt], cues=[cue]).input_ids
            past, generated = None, []
            for _ in range(limit):
                out = self.lm(input_ids=input_ids, past_key_values=past, use_cache=True)
                token = next_token(row, out.logits[0, -1].float().numpy())
                if token == self.tokenizer.eos_token_id:
                    break
                generated.append(token)
                past, input_ids = out.past_key_values, torch.tensor([[token]], dtype=torch.long)
            texts.append(self.tokenizer.decode(generated, skip_special_tokens=True).strip())
        return texts

