"""``make bench-serve``: TRAIL's scoring and explanation speed, every serving path, the same prompts, one run.

  - PyTorch fp32 eager (the checkpoint as trained: LoRA adapter unmerged) — the baseline;
  - ONNX Runtime fp32 (the exported, merged scoring graph);
  - ONNX Runtime int8, outlier-aware (``training.quantize``: down_proj kept fp32);
  - Triton (python backend running the int8 graph) over gRPC.
Scoring: items/s and p50/p95 latency per request at batch 1, 8, 32, 128; ranking agreement (Spearman) and max
|diff| against PyTorch fp32. Explanations: greedy tokens/s, PyTorch's decoder loop vs the ONNX one; then, on the
ONNX runner, explanations/s for K = 1, 10, 20 items decoded one at a time (sequential), as one batch (batched: what
the worker runs), as one batch with 6-token prompt-lookup drafts (drafted, off in the worker) and as one constrained
batch (cold, and as the worker's second round: right after the greedy batch of the same items, whose prefills it
reuses), the K = 10 ratio again as the median of 4 sequential/batched pairs timed back to back (the number the
one-third target is judged by: the machine drifts between a single pair's timings), and a window's model time
(score 200 candidates, explain 20 in one batch); then all of it again with the
generator's weights in 8 bits (``--quantize-generator``), timed against the fp32 generator in the same run.
Writes ``reports/bench_serve.json``. Threads: ``--threads`` for torch, ORT and Triton alike. ``--explain-only
--version FOLDER``: only the explanation rows, on an exported version folder (no export, no Triton); with
``--baseline FOLDER`` (a version exported by an earlier release, or the fp32 export of the same checkpoint when
FOLDER holds an 8-bit generator) its sequential and batched decoding are timed in the same run: the sequential time
is "today's sequential time" that batched decoding is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from localstack import LocalTriton, free_port  # noqa: E402
from serving.onnx_backend import score_inputs  # noqa: E402
from serving.trail_onnx import (GENERATOR_FILE, SCORE_FILE, TrailOnnx, check_version_folder,  # noqa: E402
                                write_manifest)
from serving.triton_backend import TritonBackend  # noqa: E402
from trail.decoding import Decoding  # noqa: E402
from trail.prompt import explanation_cue, render_prompt  # noqa: E402
from training.export import export_model, verification_signals  # noqa: E402
from training.generator_graph import restore_every_logit  # noqa: E402
from training.metrics import spearman  # noqa: E402
from training.model import TrailModel  # noqa: E402
from training.quantize import quantize_generator_weights, quantize_linear_layers  # noqa: E402

BATCHES = (1, 8, 32, 128)
EXPLAIN_KS = (1, 10, 20)
INTERLEAVED_REPEATS = 4  # sequential/batched pairs of K = 10 timed back to back (interleaved_ratio)
DRAFTED_TOKENS = 6  # the drafted row's prompt-lookup draft length (trail.decoding.DRAFT_TOKENS was 6 when it was on)


def explanation_speed(runtime: TrailOnnx, signals: Sequence, window_candidates: int = 200,
                      baseline: TrailOnnx | None = None) -> dict:
    """Sequential vs batched vs constrained-batched decoding of K explanations, and one window's model time;
    ``baseline``'s sequential decoding of the same K items too, when given."""
    fmt = runtime.prompt_format
    prompts = [render_prompt(s, fmt) for s in signals]
    predicted = np.expm1(runtime.score(*score_inputs(signals, fmt))).clip(0)
    cues = [explanation_cue(s, p, fmt) for s, p in zip(signals, predicted)]
    for warming in (runtime, baseline):  # a session's first decode pays for its allocations: not part of a timing
        if warming is not None:
            warming.explain_batch(prompts[:2], cues[:2], max_new_tokens=4)
    out: dict[str, dict] = {}
    for k in EXPLAIN_KS:
        row: dict[str, float] = {}
        runtime.forget_prefills()  # every timing but the second round's starts without kept prefills
        t0 = time.perf_counter()
        sequential = [runtime.explain_batch([p], [c], draft_tokens=0)[0] for p, c in zip(prompts[:k], cues[:k])]
        row["sequential_s"] = time.perf_counter() - t0
        runtime.forget_prefills()
        t0 = time.perf_counter()
        batched = runtime.explain_batch(prompts[:k], cues[:k], draft_tokens=0)
        row["batched_s"] = time.perf_counter() - t0
        # the worker's second decoding round: the same items, constrained, their prefills kept from the greedy one
        t0 = time.perf_counter()
        second_round = runtime.explain_batch(prompts[:k], cues[:k], [Decoding(constrained=True)] * k)
        row["constrained_second_round_s"] = time.perf_counter() - t0
        runtime.forget_prefills()
        t0 = time.perf_counter()
        drafted = runtime.explain_batch(prompts[:k], cues[:k], draft_tokens=DRAFTED_TOKENS)
        row["drafted_s"] = time.perf_counter() - t0
        row["drafts_kept"] = runtime.drafts_kept
        row["tokens_written"] = sum(map(len, runtime.last_token_ids))
        runtime.forget_prefills()
        t0 = time.perf_counter()
        constrained = runtime.explain_batch(prompts[:k], cues[:k], [Decoding(constrained=True)] * k)
        row["constrained_s"] = time.perf_counter() - t0
        row["second_round_speedup"] = round(row["constrained_s"] / row["constrained_second_round_s"], 2)
        row["identical_second_round_vs_constrained"] = sum(a == b for a, b in zip(second_round, constrained))
        row.update({f"{name}_per_s": round(k / row[f"{name}_s"], 2)
                    for name in ("sequential", "batched", "drafted", "constrained")})
        row["batched_speedup"] = round(row["sequential_s"] / row["batched_s"], 2)
        row["drafted_speedup"] = round(row["sequential_s"] / row["drafted_s"], 2)
        row["identical_batched_vs_sequential"] = sum(a == b for a, b in zip(sequential, batched))
        row["identical_drafted_vs_sequential"] = sum(a == b for a, b in zip(sequential, drafted))
        if baseline is not None:
            t0 = time.perf_counter()
            before = [baseline.explain_batch([p], [c], draft_tokens=0)[0] for p, c in zip(prompts[:k], cues[:k])]
            row["baseline_sequential_s"] = time.perf_counter() - t0
            baseline.forget_prefills()
            t0 = time.perf_counter()
            baseline.explain_batch(prompts[:k], cues[:k], draft_tokens=0)
            row["baseline_batched_s"] = time.perf_counter() - t0
            row["batched_vs_baseline_sequential"] = round(row["batched_s"] / row["baseline_sequential_s"], 3)
            row["batched_vs_baseline_batched"] = round(row["batched_s"] / row["baseline_batched_s"], 3)
            row["identical_baseline_vs_sequential"] = sum(a == b for a, b in zip(before, sequential))
        out[f"k_{k}"] = {key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()}
        print("explanations", k, out[f"k_{k}"], flush=True)
    out["interleaved_k_10"] = interleaved_ratio(runtime, prompts[:10], cues[:10], baseline)
    window = [signals[i % len(signals)] for i in range(window_candidates)]
    t0 = time.perf_counter()
    scores = np.concatenate([runtime.score(*score_inputs(window[i: i + 32], fmt)) for i in range(0, len(window), 32)])
    score_s = time.perf_counter() - t0
    top = np.argsort(-scores)[:20]
    runtime.forget_prefills()
    t0 = time.perf_counter()
    runtime.explain_batch([render_prompt(window[i], fmt) for i in top],
                          [explanation_cue(window[i], float(np.expm1(scores[i])), fmt) for i in top])
    explain_s = time.perf_counter() - t0
    out["window_model_time"] = {"candidates_scored": window_candidates, "explained": 20,
                                "score_s": round(score_s, 2), "explain_batched_s": round(explain_s, 2),
                                "total_s": round(score_s + explain_s, 2)}
    print("window model time", out["window_model_time"], flush=True)
    return out


def interleaved_ratio(runtime: TrailOnnx, prompts: Sequence[str], cues: Sequence[str],
                      baseline: TrailOnnx | None = None, repeats: int = INTERLEAVED_REPEATS) -> dict:
    """Batched over sequential time of the same items, as pairs timed back to back ``repeats`` times, and the
    median of the ratios: this machine's speed drifts within minutes, and a sequential run timed once, minutes before
    the batched ones, moved the K = 10 ratio between 0.34 and 0.46. Sequential is ``baseline``'s (today's runner)
    when given, and then ``baseline``'s batched time is in each repeat too."""
    reference = baseline or runtime
    runs: dict[str, Callable[[], object]] = {
        "sequential": lambda: [reference.explain_batch([p], [c]) for p, c in zip(prompts, cues)],
        "batched": lambda: runtime.explain_batch(prompts, cues)}
    if baseline is not None:
        runs["baseline_batched"] = lambda: baseline.explain_batch(prompts, cues)
    pairs: list[dict[str, float]] = []
    for _ in range(repeats):
        times: dict[str, float] = {}
        for name, run in runs.items():
            runtime.forget_prefills()
            reference.forget_prefills()
            t0 = time.perf_counter()
            run()
            times[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        times["batched_over_sequential"] = round(times["batched_s"] / times["sequential_s"], 3)
        if baseline is not None:
            times["batched_over_baseline_batched"] = round(times["batched_s"] / times["baseline_batched_s"], 3)
        pairs.append(times)
        print("interleaved", len(prompts), times, flush=True)
    medians = {f"median_{key}": round(statistics.median(p[key] for p in pairs), 3)
               for key in pairs[0] if key.startswith("batched_over")}
    return {"items": len(prompts), "repeats": pairs, **medians}


def logit_cut_speed(cut: TrailOnnx, every: TrailOnnx, signals: Sequence) -> dict:
    """The worker's path (batched) with the exported generator, whose logits are cut to the last
    positions, against the same generator projecting every position (older exports), same prompts, same run."""
    fmt = cut.prompt_format
    prompts = [render_prompt(s, fmt) for s in signals]
    predicted = np.expm1(cut.score(*score_inputs(signals, fmt))).clip(0)
    cues = [explanation_cue(s, p, fmt) for s, p in zip(signals, predicted)]
    for runtime in (every, cut):  # a session's first decode pays for its allocations: not part of either timing
        runtime.explain_batch(prompts[:2], cues[:2], max_new_tokens=4)
    out: dict[str, dict] = {}
    for k in EXPLAIN_KS:
        row: dict[str, float] = {}
        texts = {}
        for name, runtime in (("every_logit", every), ("cut", cut)):
            t0 = time.perf_counter()
            texts[name] = runtime.explain_batch(prompts[:k], cues[:k])
            row[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        row["speedup"] = round(row["every_logit_s"] / row["cut_s"], 2)
        row["identical"] = sum(a == b for a, b in zip(texts["every_logit"], texts["cut"]))
        out[f"k_{k}"] = row
        print("logit cut", k, row, flush=True)
    return out


def timed(run: Callable[[Sequence], np.ndarray], signals: Sequence, batch: int, budget_s: float) -> dict:
    """Requests of ``batch`` items, cycling over ``signals``, until ``budget_s`` (at least 3 requests)."""
    latencies: list[float] = []
    started = time.perf_counter()
    position = 0
    while len(latencies) < 3 or time.perf_counter() - started < budget_s:
        chunk = [signals[(position + i) % len(signals)] for i in range(batch)]
        position += batch
        t0 = time.perf_counter()
        run(chunk)
        latencies.append(time.perf_counter() - t0)
    items = batch * len(latencies)
    return {"items_per_s": round(items / sum(latencies), 2),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1), "requests": len(latencies)}


def variant_folder(version: Path, target: Path, graph: str = SCORE_FILE,
                   quantize: Callable[[Path, Path], object] = quantize_linear_layers) -> Path:
    """A copy of the exported version whose ``graph`` is replaced by ``quantize``'s version of it (manifest sizes
    updated): by default the int8 scoring graph; ``GENERATOR_FILE`` with :func:`quantize_generator_weights`, the
    8-bit generator of ``trail export --quantize-generator``."""
    shutil.copytree(version, target)
    quantize(version / graph, target / graph)
    write_manifest(target, check_version_folder(version))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "online-retail")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per (path, batch) measurement")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_serve.json")
    parser.add_argument("--explain-only", action="store_true", help="only the explanation-speed rows")
    parser.add_argument("--version", type=Path, help="an exported version folder (with --explain-only)")
    parser.add_argument("--baseline", type=Path, help="with --explain-only: a version folder exported by an earlier "
                                                      "release, whose sequential decoding is timed alongside")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    signals = verification_signals(args.items, seed=1)
    if args.explain_only:
        if args.version is None:
            parser.error("--explain-only needs --version FOLDER (an exported version, e.g. triton_models/trail/1)")
        runtime = TrailOnnx(args.version, threads=args.threads)
        baseline = TrailOnnx(args.baseline, threads=args.threads) if args.baseline else None
        speed = explanation_speed(runtime, signals, baseline=baseline)
        with tempfile.TemporaryDirectory(prefix="bench-every-logit-") as scratch:
            every = Path(scratch) / "trail" / "1"
            shutil.copytree(args.version, every)
            if restore_every_logit(every / GENERATOR_FILE):  # a version exported with the logit cut
                write_manifest(every, check_version_folder(args.version))
                speed["logit_cut"] = logit_cut_speed(runtime, TrailOnnx(every, threads=args.threads), signals)
        out = args.out.with_name("bench_explain.json")
        out.write_text(json.dumps({"version": str(args.version), "threads": args.threads, **speed,
                                   "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
        return 0
    model = TrailModel.load(args.checkpoint)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        started = time.perf_counter()
        exported = export_model(args.checkpoint, work / "repo", "trail", verify_texts=1)
        export_s = time.perf_counter() - started
        int8_repo = work / "int8"
        int8 = variant_folder(exported.folder, int8_repo / "trail" / "1")
        shutil.copyfile(exported.folder.parent / "config.pbtxt", int8_repo / "trail" / "config.pbtxt")
        fp32_runtime = TrailOnnx(exported.folder, threads=args.threads)
        int8_runtime = TrailOnnx(int8, threads=args.threads)

        def onnx_run(runtime: TrailOnnx) -> Callable[[Sequence], np.ndarray]:
            return lambda chunk: runtime.score(*score_inputs(chunk, runtime.prompt_format))

        paths: dict[str, Callable[[Sequence], np.ndarray]] = {
            "pytorch_fp32": lambda chunk: model.predict_log_counts(chunk, batch_size=len(chunk)),
            "ort_fp32": onnx_run(fp32_runtime),
            "ort_int8_outlier_aware": onnx_run(int8_runtime),
        }
        os.environ["TRAIL_ORT_THREADS"] = str(args.threads)
        triton = LocalTriton(model_repository=int8_repo, work_dir=work / "triton", http_port=free_port(),
                             grpc_port=free_port(), metrics_port=free_port(), load_models=("trail",))
        triton.start(timeout_s=180)
        try:
            client = TritonBackend(f"127.0.0.1:{triton.grpc_port}", "trail", batch_size=128)
            paths["triton_int8"] = lambda chunk: np.array([f.score for f in client.score(chunk)])
            reference = paths["pytorch_fp32"](signals)
            results: dict[str, dict] = {}
            for name, run in paths.items():
                scores = np.concatenate([run(signals[i: i + 32]) for i in range(0, len(signals), 32)])
                results[name] = {"spearman_vs_pytorch": round(spearman(scores, reference), 5),
                                 "max_abs_diff_vs_pytorch": float(np.max(np.abs(scores - reference)))}
                for batch in BATCHES:
                    results[name][f"batch_{batch}"] = timed(run, signals, batch, args.budget)
                    print(name, batch, results[name][f"batch_{batch}"], flush=True)
        finally:
            triton.stop()
        sample = signals[:4]
        predicted = np.expm1(model.predict_log_counts(sample)).clip(0)
        t0 = time.perf_counter()
        torch_texts = model.explain(sample, predicted)
        torch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fmt = fp32_runtime.prompt_format
        onnx_texts = [fp32_runtime.explain(render_prompt(s, fmt), explanation_cue(s, p, fmt))
                      for s, p in zip(sample, predicted)]
        onnx_s = time.perf_counter() - t0
        tokens = sum(len(model.tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in torch_texts)
        explanation = {"items": len(sample), "tokens": tokens,
                       "pytorch_tokens_per_s": round(tokens / torch_s, 1), "ort_tokens_per_s": round(tokens / onnx_s, 1),
                       "pytorch_ms_per_explanation": round(1000 * torch_s / len(sample)),
                       "ort_ms_per_explanation": round(1000 * onnx_s / len(sample)),
                       "identical_texts": sum(a == b for a, b in zip(torch_texts, onnx_texts))}
        explanation["onnx_decoding"] = explanation_speed(fp32_runtime, signals)
        # the same decoding with the 8-bit generator, against the fp32 one's sequential and batched time (baseline)
        gen8_folder = variant_folder(exported.folder, work / "gen8" / "trail" / "1", GENERATOR_FILE,
                                     quantize_generator_weights)
        generator_8bit = TrailOnnx(gen8_folder, threads=args.threads)
        explanation["onnx_decoding_8bit_generator"] = explanation_speed(generator_8bit, signals, baseline=fp32_runtime)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results["pytorch_fp32"]
    speedups = {name: {f"batch_{b}": round(r[f"batch_{b}"]["items_per_s"] / base[f"batch_{b}"]["items_per_s"], 2)
                       for b in BATCHES} for name, r in results.items()}
    triton_vs_ort = {f"batch_{b}": round(results["triton_int8"][f"batch_{b}"]["items_per_s"]
                                         / results["ort_int8_outlier_aware"][f"batch_{b}"]["items_per_s"], 2)
                     for b in BATCHES}
    report = {"checkpoint": str(args.checkpoint), "threads": args.threads, "items": args.items,
              "export_seconds": round(export_s, 1), "scoring": results, "speedup_vs_pytorch": speedups,
              "triton_vs_embedded_int8": triton_vs_ort, "explanations": explanation,
              "machine": f"{os.cpu_count()} CPU cores, no GPU"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"speedup_vs_pytorch": speedups, "triton_vs_embedded_int8": triton_vs_ort,
                      "agreement": {n: r["spearman_vs_pytorch"] for n, r in results.items()},
                      "explanations": explanation}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
