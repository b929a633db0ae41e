"""Writes models into a Triton model repository: ``config.pbtxt`` generated from code, version folders atomically.

Layout written for a model ``name``::

    <repository>/<name>/config.pbtxt
    <repository>/<name>/<version>/model.py     (serving/triton_onnx_model.py: onnxruntime in the python backend)
    <repository>/<name>/<version>/model.onnx
    <repository>/<name>/<version>/manifest.json

A version is assembled in a hidden sibling folder and renamed into place, so a server or a worker polling the
repository never sees half a version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from trail.errors import TrailError

__all__ = ["RETIRED_FOLDER", "RepositoryError", "TensorSpec", "latest_version", "load_on_triton", "model_config_text",
           "next_version", "retire_latest", "write_onnx_version"]

RETIRED_FOLDER = ".retired"  # <model>/.retired/<version>: rolled-back versions, out of every server's sight

_BACKEND_MODEL = Path(__file__).with_name("triton_onnx_model.py")

_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
           "bool": "TYPE_BOOL", "bytes": "TYPE_STRING"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output; ``dims`` excludes the batch dimension (-1 = variable)."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    def to_pbtxt(self) -> str:
        if self.dtype not in _DTYPES:
            raise ValueError(f"TensorSpec {self.name!r}: dtype {self.dtype!r} is not one of {sorted(_DTYPES)}")
        dims = ", ".join(str(d) for d in self.dims)
        return f'  {{ name: "{self.name}" data_type: {_DTYPES[self.dtype]} dims: [ {dims} ] }}'


def model_config_text(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int = 128,
    preferred_batch_sizes: Sequence[int] = (8, 32),
    max_queue_delay_us: int = 2000,
    instance_count: int = 1,
    version_policy_latest: int = 2,
) -> str:
    """The ``config.pbtxt`` of a python-backend model with dynamic batching."""
    preferred = ", ".join(str(size) for size in preferred_batch_sizes if size <= max_batch_size)
    return "\n".join([
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        ",\n".join(spec.to_pbtxt() for spec in inputs),
        "]",
        "output [",
        ",\n".join(spec.to_pbtxt() for spec in outputs),
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {preferred} ]" if preferred else "",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {instance_count} kind: KIND_CPU }} ]",
        f"version_policy: {{ latest: {{ num_versions: {version_policy_latest} }} }}",
        "",
    ])


class RepositoryError(TrailError, RuntimeError):
    """A model repository operation that cannot be done (no version to roll back to, Triton refused a load)."""


def _versions(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def latest_version(model_dir: Path) -> int | None:
    """The highest integer version folder of a model (the one that serves), or None."""
    return max(_versions(model_dir), default=None)


def next_version(model_dir: Path) -> int:
    """The number a new version gets: above every version ever published, rolled-back ones included, so a
    version number names one model for good."""
    return max([0, *_versions(model_dir), *_versions(model_dir / RETIRED_FOLDER)]) + 1


def retire_latest(model_dir: Path) -> tuple[int, int]:
    """Roll back: move the serving (newest) version into ``.retired/``, so the one before it serves again (the
    embedded backend switches at its next window; a Triton server after :func:`load_on_triton`). Returns
    ``(retired, now_serving)``."""
    versions = _versions(model_dir)
    if len(versions) < 2:
        raise RepositoryError(f"{model_dir} holds {len(versions)} version(s): nothing to roll back to")
    retired, serving = versions[-1], versions[-2]
    (model_dir / RETIRED_FOLDER).mkdir(exist_ok=True)
    os.rename(model_dir / str(retired), model_dir / RETIRED_FOLDER / str(retired))
    return retired, serving


def load_on_triton(url: str, model_name: str, timeout_s: float = 120.0) -> None:
    """Ask a Triton server (explicit model control, HTTP ``url``) to load ``model_name`` again: it re-reads the
    repository and serves its newest version(s)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url.rstrip('/')}/v2/repository/models/{model_name}/load", data=b"{}",
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 - an operator-given URL
            pass
    except urllib.error.HTTPError as exc:
        raise RepositoryError(f"Triton at {url} refused to load {model_name}: HTTP {exc.code} "
                              f"{exc.read().decode(errors='replace')[:300]}") from None
    except OSError as exc:
        raise RepositoryError(f"Triton at {url} did not answer the load of {model_name}: {exc}") from None


def write_onnx_version(
    repository: Path,
    name: str,
    onnx_file: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    manifest: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Path] | None = None,
    version: int | None = None,
    max_batch_size: int = 128,
) -> Path:
    """Add the next integer version of ``name`` holding ``onnx_file``; returns the version folder."""
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"version {version} of model {name!r} already exists at {final}")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
    try:
        shutil.copyfile(_BACKEND_MODEL, staging / "model.py")
        shutil.copyfile(onnx_file, staging / "model.onnx")
        for file_name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / file_name)
        record = {"model": name, "version": version, "created_at": datetime.now(timezone.utc).isoformat(),
                  **(manifest or {})}
        (staging / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
        config = model_dir / "config.pbtxt"
        text = model_config_text(name, inputs, outputs, max_batch_size=max_batch_size)
        if not config.exists() or config.read_text() != text:
            tmp_config = model_dir / ".config.pbtxt.tmp"
            tmp_config.write_text(text)
            os.replace(tmp_config, config)
        staging.chmod(0o755)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
