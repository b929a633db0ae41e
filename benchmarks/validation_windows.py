"""What the head probes (`listwise_head.py`, `head_inputs.py`) share: a dataset's examples, split in time and scored
on its VALIDATION windows, so the test windows stay unread, and the shipped checkpoint's recipe for the no-LLM head."""

from __future__ import annotations

from pathlib import Path

from trail.windows import WindowSpec
from training.cli import DEFAULT_WINDOWS
from training.datasets import open_dataset
from training.examples import Split, build_examples, temporal_split
from training.feature_head import FeatureHead
from training.train import TrainConfig

DATASETS = ("online-retail", "stackexchange")


def validation_problem(name: str) -> tuple[Split, TrainConfig, int]:
    """The split whose "test" is the validation windows, and ``models/<name>``'s training recipe and steps."""
    dataset = open_dataset(name, None, "")
    examples, _ = build_examples(dataset.interactions(), WindowSpec.parse(DEFAULT_WINDOWS[name]), dataset.items())
    split = temporal_split(examples)
    recipe = FeatureHead.recipe_of(Path("models") / name)
    if recipe is None:
        raise SystemExit(f"no shipped checkpoint in models/{name} to take the recipe from")
    return Split(split.train, split.validation, split.validation, split.windows), *recipe
