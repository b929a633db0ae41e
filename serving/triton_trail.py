"""The TRAIL model's interface on Triton: thin inputs (the prompt text, 22 features, the current log count, an
optional forecast cue) and the python-backend files each version folder carries."""

from __future__ import annotations

from pathlib import Path

from trail.features import FEATURE_NAMES

from .triton_repository import TensorSpec, model_config_text

__all__ = ["TRAIL_INPUTS", "TRAIL_OUTPUTS", "backend_files", "trail_model_config"]

TRAIL_INPUTS = (
    TensorSpec("PROMPT", "bytes", (1,)),  # trail.prompt.render_prompt in the served version's format, UTF-8
    TensorSpec("FEATURES", "float32", (len(FEATURE_NAMES),)),  # trail.features.model_features
    TensorSpec("CURRENT_LOG_COUNT", "float32", (1,)),  # log1p(this window's count)
    TensorSpec("CUE", "bytes", (1,)),  # trail.prompt.explanation_cue(...); empty: no explanation wanted
    TensorSpec("DECODING", "int32", (2,)),  # trail.decoding.Decoding.to_list(): [constrained 0/1, sample seed]
)
TRAIL_OUTPUTS = (
    TensorSpec("LOG_COUNT", "float32", (1,)),  # predicted log1p(next window's count)
    TensorSpec("EXPLANATION", "bytes", (1,)),  # the text after PROMPT + CUE as DECODING says; empty without CUE
    # the prompt format the serving version reads: a client that rendered another one renders again and retries
    TensorSpec("PROMPT_FORMAT", "int32", (1,)),
)


def backend_files() -> dict[str, Path]:
    """File name in the version folder → source: the python-backend model and the ONNX runner it imports."""
    here = Path(__file__).parent
    return {"model.py": here / "triton_trail_model.py", "trail_onnx.py": here / "trail_onnx.py",
            "trail_decoding.py": here.parent / "trail" / "decoding.py",
            "trail_errors.py": here.parent / "trail" / "errors.py",
            "trail_serving_contract.py": here.parent / "trail" / "serving_contract.py"}


def trail_model_config(model_name: str) -> str:
    """The model's ``config.pbtxt``: dynamic batches up to 128 rows, the newest version served."""
    return model_config_text(model_name, TRAIL_INPUTS, TRAIL_OUTPUTS, max_batch_size=128, version_policy_latest=1)
