"""Triton's own load generator against the TRAIL model: ``make bench-perf-analyzer``.

Starts a local Triton on free ports serving the newest version in ``--repository`` (``make export-onnx`` first;
``EXPORT_ARGS=--quantize`` for the int8 scoring graph), writes perf_analyzer's ``--input-data`` JSON from real
prompts (``training.export.verification_signals``: the same items the export verifies; ``CUE`` empty, so each
request is scoring only) and runs ``perf_analyzer`` over gRPC at each batch size. Prints perf_analyzer's own
summary lines and writes ``reports/perf_analyzer.json``.

perf_analyzer comes from the ``tritonclient`` 2.41 wheel (the last one that bundles it; ``make perf-analyzer-tool``
puts it in ``.perf/``); it needs ``libb64-0d`` (apt) and ``libcudart.so.12`` (from the ``nvidia-cuda-runtime-cu12``
wheel, unpacked next to it), though it uses no GPU here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localstack import LocalTriton, free_port  # noqa: E402
from serving.onnx_backend import score_inputs  # noqa: E402
from serving.triton_repository import latest_version  # noqa: E402
from training.export import verification_signals  # noqa: E402

PERF = ROOT / ".perf"


def input_data(path: Path, items: int) -> Path:
    """perf_analyzer's JSON: one entry per item, each a batch-less row of every input."""
    signals = verification_signals(items)
    prompts, features, current = score_inputs(signals)
    rows = [{"PROMPT": [prompt], "FEATURES": {"content": [float(x) for x in row], "shape": [len(row)]},
             "CURRENT_LOG_COUNT": [float(c)], "CUE": [""], "DECODING": [0, 0]}
            for prompt, row, c in zip(prompts, features, current)]
    path.write_text(json.dumps({"data": rows}))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "triton_models")
    parser.add_argument("--model", default="trail")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--items", type=int, default=24, help="distinct prompts in the input data")
    parser.add_argument("--items-per-window", type=int, default=64,
                        help="items per measurement window (requests = this / batch, at least 4)")
    args = parser.parse_args()
    binary = PERF / "bin" / "perf_analyzer"
    if not binary.exists():
        print(f"no {binary}: run `make perf-analyzer-tool` first", file=sys.stderr)
        return 1
    version = latest_version(args.repository / args.model)
    if version is None:
        print(f"no version of {args.model} in {args.repository}: run `make export-onnx` first", file=sys.stderr)
        return 1
    env = {**os.environ, "LD_LIBRARY_PATH": f"{PERF / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="trail-perf-") as scratch:
        work = Path(scratch)
        data = input_data(work / "input.json", args.items)
        triton = LocalTriton(model_repository=args.repository, work_dir=work / "triton", http_port=free_port(),
                             grpc_port=free_port(), metrics_port=free_port(), load_models=(args.model,))
        triton.start(timeout_s=180)
        try:
            for batch in (int(b) for b in args.batches.split(",")):
                report = work / f"batch{batch}.csv"
                command = [str(binary), "-m", args.model, "-i", "grpc", "-u", triton.grpc_url, "-b", str(batch),
                           "--input-data", str(data), "--concurrency-range", "1:1",
                           # windows of a fixed request count: a batch of 32 takes seconds on a CPU
                           "--measurement-mode", "count_windows",
                           "--measurement-request-count", str(max(4, args.items_per_window // batch)),
                           "--stability-percentage", "25", "--max-trials", "6",
                           "-f", str(report)]
                run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
                print(f"── perf_analyzer batch {batch} (model {args.model} v{version})")
                print("\n".join(line for line in run.stdout.splitlines()
                                if "Throughput" in line or "latency" in line.lower() or "Concurrency" in line))
                if run.returncode != 0:
                    print(run.stdout[-2000:], run.stderr[-2000:], file=sys.stderr)
                    return run.returncode
                with open(report) as handle:
                    row = next(csv.DictReader(handle))
                results[f"batch_{batch}"] = {
                    "inferences_per_s": float(row["Inferences/Second"]),
                    "p50_latency_ms": float(row["p50 latency"]) / 1000, "p95_latency_ms": float(row["p95 latency"]) / 1000}
        finally:
            triton.stop()
    out = ROOT / "reports" / "perf_analyzer.json"
    out.write_text(json.dumps({"model": args.model, "version": version, "tool": "perf_analyzer (tritonclient 2.41)",
                               "protocol": "grpc", "concurrency": 1, "results": results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
