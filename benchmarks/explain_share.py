"""Who writes the published explanations: the worker's selection (greedy, then constrained candidates, then the
composer) run offline over a dataset's validation windows with an exported version, as the merger runs it.

``python benchmarks/explain_share.py --version triton_models/trail/1 --dataset online-retail --windows 4``
(``--first``: the dataset's first windows, where a worker started on an empty topic begins)
prints, and writes to ``reports/explain_share_<dataset>.json``: the share of published texts from each source,
the claim precision of the greedy texts alone and of what is published, and seconds per window (scoring plus the
first ``--candidates`` value's explanations). ``--candidates 2 4`` runs the selection with each number of decoding
rounds on the same windows and reports each one's share and explanation seconds, a ratio taken in one run;
``--compare-prefill-reuse`` also times the first value's rounds with every round prefilling its items again. Validation
windows only (the windows just before the test windows of ``trail evaluate``): prompts and decoding are chosen
on these, the test windows stay unread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.explanations import explain_verified  # noqa: E402
from serving.onnx_backend import OnnxBackend  # noqa: E402
from trail.decoding import CANDIDATE_DECODINGS, DEFAULT_EXPLANATION_CANDIDATES, GREEDY  # noqa: E402
from trail.explain import check  # noqa: E402
from trail.replay import replay_windows  # noqa: E402
from trail.windows import WindowSpec, parse_duration  # noqa: E402
from training.cli import DEFAULT_WINDOWS  # noqa: E402
from training.datasets import open_dataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, required=True, help="an exported version folder")
    parser.add_argument("--dataset", default="online-retail")
    parser.add_argument("--windows", type=int, default=4, help="validation windows, the latest ones")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--candidates", type=int, nargs="+", default=[DEFAULT_EXPLANATION_CANDIDATES],
                        choices=range(1, len(CANDIDATE_DECODINGS) + 1), metavar="N",
                        help="decodings tried before the composer, as TRAIL_EXPLANATION_CANDIDATES (default: the "
                             "worker's); several values are each run on the same windows, and their explanation time "
                             "compared in the same run")
    parser.add_argument("--first", action="store_true",
                        help="the dataset's first windows instead, as a worker started on an empty topic (make run) "
                             "meets them: every item is new, its previous count 0")
    parser.add_argument("--compare-prefill-reuse", action="store_true",
                        help="also run the first --candidates value with every round prefilling its items again (as "
                             "before prefills were kept between rounds), and report that time beside the other")
    args = parser.parse_args()
    version = args.version.resolve()
    backend = OnnxBackend(version.parent.parent, version.parent.name)
    if backend.refresh() != int(version.name):
        raise SystemExit(f"{version} is not the newest servable version of its repository")
    dataset = open_dataset(args.dataset)
    spec = WindowSpec(parse_duration(DEFAULT_WINDOWS.get(args.dataset, "7d")))
    windows = list(replay_windows(dataset.interactions(), spec, items=dataset.items()))
    n_test = max(1, round((len(windows) - 1) * 0.15))  # as training.examples.temporal_split over labelled windows
    chosen = windows[: args.windows] if args.first else windows[-2 * n_test - 1: -n_test - 1][-args.windows:]
    counts = list(dict.fromkeys(args.candidates))  # the order given: the first is the report's headline
    sources: dict[int, Counter] = {n: Counter() for n in counts}
    explain_seconds: dict[int, list[float]] = {n: [] for n in counts}
    greedy_claims = greedy_verified = 0
    published_claims = {n: 0 for n in counts}
    published_verified = {n: 0 for n in counts}
    seconds: list[float] = []
    cold_seconds: list[float] = []  # --compare-prefill-reuse: the first count's rounds without kept prefills
    runtime = backend.runtime
    for window in chosen:
        started = time.monotonic()
        candidates = list(window.candidates)
        forecasts = backend.score(candidates)
        top = sorted(range(len(candidates)), key=lambda i: -(forecasts[i].score or 0.0))[: args.top_k]
        signals, chosen_forecasts = [candidates[i] for i in top], [forecasts[i] for i in top]
        seconds.append(time.monotonic() - started)
        if args.compare_prefill_reuse:
            runtime.forget_prefills()
            runtime.reuse_prefills = False
            explain_started = time.monotonic()
            explain_verified(backend, signals, chosen_forecasts, range(len(top)), CANDIDATE_DECODINGS[:counts[0]])
            cold_seconds.append(time.monotonic() - explain_started)
            runtime.reuse_prefills = True
        for n in counts:
            runtime.forget_prefills()  # each count's first round starts cold, as a window's does in the worker
            explain_started = time.monotonic()
            explanations = explain_verified(backend, signals, chosen_forecasts, range(len(top)),
                                            CANDIDATE_DECODINGS[:n])
            explain_seconds[n].append(time.monotonic() - explain_started)
            for e in explanations:
                published_claims[n] += len(e.check.claims)
                published_verified[n] += e.check.verified_count
                sources[n][e.source] += 1
                print(f"window {window.index} candidates {n} {e.source:>17}: {e.text}", flush=True)
        seconds[-1] += explain_seconds[counts[0]][-1]
        greedy = backend.explain(signals, chosen_forecasts, [GREEDY] * len(signals))
        for text, s, f in zip(greedy, signals, chosen_forecasts):
            result = check(text or "", s, f)
            greedy_claims += len(result.claims)
            greedy_verified += result.verified_count
            if not result.all_verified:  # why the model's own text was not published
                reasons = "; ".join(c.reason for c in result.claims if not c.verified) or "no claim found"
                print(f"window {window.index} greedy rejected: {text!r} ({reasons})", flush=True)

    def by_count(n: int) -> dict:
        total = sum(sources[n].values())
        return {"candidates": n, "sources": dict(sources[n]),
                "model_written_share": round((sources[n]["model"] + sources[n]["model-constrained"]) / total, 3),
                "published_claim_precision": round(published_verified[n] / published_claims[n], 4),
                "explain_seconds_per_window": round(sum(explain_seconds[n]) / len(explain_seconds[n]), 2)}

    runs = [by_count(n) for n in counts]
    report = {"version": str(version), "dataset": args.dataset, "windows": [w.index for w in chosen],
              "which": "first" if args.first else "validation", "top_k": args.top_k,
              **runs[0], "greedy_claim_precision": round(greedy_verified / greedy_claims, 4) if greedy_claims else None,
              "seconds_per_window": round(sum(seconds) / len(seconds), 1),
              "by_candidates": runs}
    if cold_seconds:
        reused = explain_seconds[counts[0]]
        report["prefill_reuse"] = {"candidates": counts[0], "explain_seconds_per_window_reused": round(
            sum(reused) / len(reused), 2), "explain_seconds_per_window_not_reused": round(
            sum(cold_seconds) / len(cold_seconds), 2), "speedup": round(sum(cold_seconds) / sum(reused), 2)}
    out = ROOT / "reports" / f"explain_share_{args.dataset}{'_first' if args.first else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
