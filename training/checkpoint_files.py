"""The file that makes a folder a TRAIL checkpoint, in a module free of torch: the CLI checks a checkpoint argument
before it imports the model (a wrong path is refused in half a second, not after ten of imports)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ABLATION_PREFIX", "CONFIG_FILE", "TRAIL_METHOD", "require_checkpoint"]

CONFIG_FILE = "trail_config.json"
# A report's names for the checkpoints it evaluates: the main one, and each ablation (``--ablation NAME=...`` is
# reported as ``trail_NAME``). Every other method of a report is a baseline that TRAIL is measured against.
TRAIL_METHOD = "trail"
ABLATION_PREFIX = f"{TRAIL_METHOD}_"


def require_checkpoint(folder: Path) -> Path:
    if not (folder / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{folder} is not a TRAIL checkpoint (no {CONFIG_FILE})")
    return folder
