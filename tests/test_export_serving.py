"""Export the tiny TRAIL model into a Triton repository; the embedded ONNX runtime, a real Triton server and PyTorch
give the same scores and the same greedy explanations; broken versions are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from localstack import LocalTriton
from serving.trail_onnx import GENERATOR_FILE, TrailOnnx, VersionError, check_version_folder, write_manifest
from trail.decoding import CANDIDATE_DECODINGS, Decoding, fact_numbers
from trail.errors import TrailError
from trail.features import model_features
from trail.prompt import explanation_cue, render_prompt
from trail.serving_contract import GENERATOR_LOGIT_POSITIONS, GENERATOR_LOGITS
from training.export import (GENERATOR_CHECK_ITEMS, ExportRejected, _export_generator, export_model,
                             verification_signals)
from training.generator_graph import fuse_grouped_query_attention, restore_every_logit, share_kv_heads
from training.model import TrailModel
from training.train import TrainConfig, train

from .test_model import TINY, _examples

DRAFTS = 6  # prompt-lookup draft length where a test turns drafts on (off by default: trail.decoding.DRAFT_TOKENS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(TINY, TrainConfig(steps=2, batch_size=4, per_window=8), _examples(), folder)
    return folder


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("repo")
    result = export_model(checkpoint, repository, model_name="trail_tiny")
    assert result.version == 1 and result.scores.passed and result.texts.passed
    return result.folder


@pytest.fixture(scope="module")
def exported_concatenated(checkpoint: Path, exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``exported`` with the generator of earlier exports: optimum's cache, concatenated at every step (each
    key/value head read in place by its query heads), which the runner still serves."""
    target = tmp_path_factory.mktemp("concatenated") / "trail" / "1"
    shutil.copytree(exported, target)
    work = tmp_path_factory.mktemp("concatenated-work")
    shutil.copyfile(_export_generator(TrailModel.load(checkpoint), work, in_place_cache=False) / "model.onnx",
                    target / GENERATOR_FILE)
    write_manifest(target, check_version_folder(exported))
    return target


def _inputs(signals):
    prompts = [render_prompt(s) for s in signals]
    current = np.log1p(np.array([s.item.count for s in signals], dtype=np.float32))
    return prompts, model_features(signals), current


def test_embedded_onnx_matches_pytorch(checkpoint: Path, exported: Path) -> None:
    model = TrailModel.load(checkpoint)
    runtime = TrailOnnx(exported, threads=1)
    signals = verification_signals()
    prompts, features, current = _inputs(signals)
    np.testing.assert_allclose(runtime.score(prompts, features, current), model.predict_log_counts(signals),
                               atol=1e-3, rtol=0)
    text = runtime.explain(prompts[0], explanation_cue(signals[0], 4.0), max_new_tokens=6)
    assert text == model.explain([signals[0]], [4.0], max_new_tokens=6)[0]
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["verification"]["identical_greedy_texts"] == "3/3"
    assert manifest["files"]["score.onnx"] == (exported / "score.onnx").stat().st_size


@pytest.mark.parametrize("decoding", CANDIDATE_DECODINGS, ids=lambda d: f"constrained{int(d.constrained)}-seed{d.seed}")
def test_every_decoding_gives_the_same_text_in_pytorch_and_onnx_batched_or_not(
        checkpoint: Path, exported: Path, decoding: Decoding) -> None:
    """The same candidate from the PyTorch model (one sequence at a time) and from the ONNX runner, alone and in a
    batch of prompts of different lengths (rows of their own lengths in the in-place cache)."""
    model = TrailModel.load(checkpoint)
    runtime = TrailOnnx(exported, threads=1)
    signals = verification_signals()[:5]
    predicted = [4.0, 0.0, 12.5, 130.0, 1.7]
    reference = [model.explain([s], [p], max_new_tokens=12, decoding=decoding)[0] for s, p in zip(signals, predicted)]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, p) for s, p in zip(signals, predicted)]
    alone = [runtime.explain(p, c, max_new_tokens=12, decoding=decoding) for p, c in zip(prompts, cues)]
    batched = runtime.explain_batch(prompts, cues, [decoding] * len(prompts), max_new_tokens=12)
    assert len({len(runtime._ids(p, 160)) for p in prompts}) > 1  # the rows really differ in length
    assert alone == reference
    assert batched == reference


def test_a_later_round_on_the_same_items_reuses_their_prefills_and_writes_the_same_texts(exported: Path) -> None:
    """The worker's second round explains the items the first left unverified, with another decoding: their prompt
    and facts are prefilled once. Only the last call's rows are kept, and what is reused is what a cold run gives."""
    runtime, cold = TrailOnnx(exported, threads=1), TrailOnnx(exported, threads=1)
    cold.reuse_prefills = False
    signals, predicted = verification_signals()[:4], [4.0, 0.0, 12.5, 1.7]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, p) for s, p in zip(signals, predicted)]
    runtime.explain_batch(prompts, cues, max_new_tokens=6)  # the greedy round
    assert runtime.prefills_reused == 0
    again = [prompts[2], prompts[1]], [cues[2], cues[1]], [Decoding(True), Decoding(True, seed=3)]
    assert runtime.explain_batch(*again, max_new_tokens=16) == cold.explain_batch(*again, max_new_tokens=16)
    assert (runtime.prefills_reused, cold.prefills_reused) == (2, 0)
    runtime.explain_batch(prompts[:1], cues[:1], max_new_tokens=4)  # row 0 was not in the last call: prefilled again
    assert runtime.prefills_reused == 2


@pytest.mark.parametrize("decoding", [Decoding(), Decoding(seed=1), Decoding(True, seed=2)],
                         ids=lambda d: f"constrained{int(d.constrained)}-seed{d.seed}")
def test_drafted_tokens_change_no_text(exported: Path, decoding: Decoding) -> None:
    """Prompt-lookup drafts only save generator steps: drafted from the right continuation (all kept), from a
    corrupted one (every third token wrong: rejections, masked out of the cache) or from the prompt and cue (off
    by default, see trail.decoding.DRAFT_TOKENS), every row writes exactly what one-token steps write."""
    runtime = TrailOnnx(exported, threads=1)
    signals = verification_signals()[:5]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, 3.0 + i) for i, s in enumerate(signals)]
    decodings = [decoding] * len(prompts)
    plain = runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24, draft_tokens=0)
    reference = [list(ids) for ids in runtime.last_token_ids]
    assert runtime.drafts_kept == 0 and sum(map(len, reference)) > 40
    right = runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24, draft_sources=reference,
                                   draft_tokens=DRAFTS)
    assert right == plain and runtime.drafts_kept >= sum(map(len, reference)) // 3
    corrupted = [[runtime.pad_id if i % 3 == 2 else t for i, t in enumerate(ids)] for ids in reference]
    assert runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24, draft_sources=corrupted,
                                  draft_tokens=DRAFTS) == plain
    assert runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24, draft_tokens=DRAFTS) == plain


def _with_every_logit(version: Path, target: Path) -> Path:
    """A copy of ``version`` whose generator projects every position onto the vocabulary, as older exports did."""
    shutil.copytree(version, target)
    assert restore_every_logit(target / GENERATOR_FILE)
    write_manifest(target, check_version_folder(version))
    return target


def test_the_generator_returns_only_the_logits_the_decoder_reads(exported: Path, tmp_path: Path) -> None:
    """The export cuts the vocabulary projection to the last GENERATOR_LOGIT_POSITIONS positions; the runner
    decodes the same texts from it as from a generator exported before the cut (every position's logits)."""
    runtime = TrailOnnx(exported, threads=1)
    signals = verification_signals()[:5]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, 3.0 + i) for i, s in enumerate(signals)]
    width = max(len(runtime._ids(p, 160) + runtime._ids(c, 128)) for p, c in zip(prompts, cues))
    feeds = runtime.prompt_feeds(np.ones((1, width), dtype=np.int64))
    logits = runtime.generator.run(["logits"], feeds)[0]
    assert width > GENERATOR_LOGIT_POSITIONS and logits.shape[1] == GENERATOR_LOGIT_POSITIONS
    every = TrailOnnx(_with_every_logit(exported, tmp_path / "1"), threads=1)
    assert every.generator.run(["logits"], feeds)[0].shape[1] == width
    np.testing.assert_allclose(every.generator.run(["logits"], feeds)[0][:, -GENERATOR_LOGIT_POSITIONS:], logits,
                               atol=1e-4, rtol=0)
    for decoding in (Decoding(), Decoding(True, seed=1)):
        decodings = [decoding] * len(prompts)
        assert (runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24)
                == every.explain_batch(prompts, cues, decodings, max_new_tokens=24))
    runtime.explain_batch(prompts, cues, max_new_tokens=24, draft_tokens=0)
    # sources that draft GENERATOR_LOGIT_POSITIONS tokens after each row's first one: a step longer than the cut
    first = [ids[0] if ids else runtime.pad_id for ids in runtime.last_token_ids]
    long_drafts = [[token] + [token + 1] * 20 for token in first]
    with pytest.raises(TrailError, match="draft_tokens must be below"):
        runtime.explain_batch(prompts, cues, max_new_tokens=24, draft_sources=long_drafts,
                              draft_tokens=GENERATOR_LOGIT_POSITIONS)


def test_the_generator_writes_its_cache_in_place(exported: Path, tmp_path: Path) -> None:
    """The export rewrites each layer's attention as ORT's GroupQueryAttention (the tiny model has 4 query heads on
    2 key/value heads, like SmolLM2's 9 on 3): no cache is concatenated or copied per query head at any step, and
    the graph reads row lengths instead of a mask; the texts equal PyTorch's (the tests above run this graph). A
    second rewrite finds nothing to do and leaves the file as it is."""
    import onnx

    graph = onnx.load(str(exported / GENERATOR_FILE)).graph
    assert [node.op_type for node in graph.node if node.op_type == "GroupQueryAttention"] == ["GroupQueryAttention"] * 2
    producers = {output: node for node in graph.node for output in node.output}
    assert {producers[output.name].op_type for output in graph.output if output.name.startswith("present.")} \
        == {"GroupQueryAttention"}
    assert not [node.name for node in graph.node if node.op_type == "Expand" and "present" in node.input[0]]
    assert {i.name for i in graph.input} >= {"seqlens_k", "total_sequence_length"}
    assert "attention_mask" not in {i.name for i in graph.input}
    assert TrailOnnx(exported, threads=1).in_place_cache
    assert json.loads((exported / "manifest.json").read_text())["generator_cache"].startswith("in place")
    copy = tmp_path / GENERATOR_FILE
    shutil.copyfile(exported / GENERATOR_FILE, copy)
    assert fuse_grouped_query_attention(copy, heads=4, kv_heads=2) == 0
    assert share_kv_heads(copy, heads=4, kv_heads=2) == 0
    assert copy.read_bytes() == (exported / GENERATOR_FILE).read_bytes()


def test_a_generator_with_the_earlier_concatenated_cache_serves_the_same_texts(exported: Path,
                                                                              exported_concatenated: Path) -> None:
    """Versions exported before the in-place cache keep serving: their generator (optimum's Concat of the cache at
    every step, each key/value head read in place by its group of query heads instead of transformers' repeat_kv
    copies) decodes left-padded rows under a mask, and writes what the in-place one writes: every decoding, batched
    or alone, with drafts kept and rejected."""
    import onnx

    graph = onnx.load(str(exported_concatenated / GENERATOR_FILE)).graph
    producers = {output: node for node in graph.node for output in node.output}
    assert not [node.name for node in graph.node if node.op_type == "Expand"
                and producers[node.input[0]].op_type == "Unsqueeze"
                and producers[node.input[0]].input[0].startswith("present.")]
    assert len([node for node in graph.node if node.name.endswith("_GroupQueries")]) == 2 * 2  # scores, values x 2
    in_place, concatenated = TrailOnnx(exported, threads=1), TrailOnnx(exported_concatenated, threads=1)
    assert not concatenated.in_place_cache
    signals = verification_signals()[:5]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, 3.0 + i) for i, s in enumerate(signals)]
    for decoding in (Decoding(), Decoding(True, seed=2)):
        decodings = [decoding] * len(prompts)
        batched = in_place.explain_batch(prompts, cues, decodings, max_new_tokens=24)
        reference = [list(ids) for ids in in_place.last_token_ids]
        assert concatenated.explain_batch(prompts, cues, decodings, max_new_tokens=24) == batched
        assert [concatenated.explain(p, c, 24, decoding) for p, c in zip(prompts, cues)] == batched
        corrupted = [[in_place.pad_id if i % 3 == 2 else t for i, t in enumerate(ids)] for ids in reference]
        for runtime in (in_place, concatenated):
            assert runtime.explain_batch(prompts, cues, decodings, max_new_tokens=24, draft_sources=corrupted,
                                         draft_tokens=DRAFTS) == batched


def test_constrained_samples_write_only_the_numbers_of_their_facts(exported: Path) -> None:
    runtime = TrailOnnx(exported, threads=1)
    signals = verification_signals()[:8]
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, 3.0 + i) for i, s in enumerate(signals)]
    constrained = runtime.explain_batch(prompts, cues, [Decoding(True, seed=7)] * len(prompts), max_new_tokens=60)
    for text, prompt, cue in zip(constrained, prompts, cues):
        assert fact_numbers(text) <= fact_numbers(prompt + cue), text


def test_incomplete_or_corrupt_versions_are_refused(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "7"
    shutil.copytree(exported, broken)
    (broken / GENERATOR_FILE).unlink()
    with pytest.raises(VersionError, match="missing generator.onnx"):
        TrailOnnx(broken)
    corrupt = tmp_path / "8"
    shutil.copytree(exported, corrupt)
    (corrupt / "score.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(VersionError, match="score.onnx is 16 bytes"):
        TrailOnnx(corrupt)


def test_a_version_that_fails_verification_is_not_published(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    with pytest.raises(ExportRejected, match="differ from PyTorch"):
        export_model(checkpoint, repository, model_name="strict", tolerance=-1.0)  # nothing can pass
    assert not [p for p in (repository / "strict").iterdir() if p.name != "config.pbtxt"]


def test_an_8_bit_generator_ships_with_its_texts_compared_to_the_fp32_ones(checkpoint: Path, exported: Path,
                                                                          tmp_path: Path) -> None:
    import onnx

    result = export_model(checkpoint, tmp_path / "repo", model_name="q8", verify_texts=1, quantize_generator=True)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["generator_precision"].startswith("8-bit") and manifest["score_precision"] == "fp32"
    check = result.generator_8bit
    assert check is not None and check.items == GENERATOR_CHECK_ITEMS
    assert manifest["verification"]["generator_8bit"] == check.to_dict()
    nodes = onnx.load(str(result.folder / GENERATOR_FILE), load_external_data=False).graph.node
    quantised = [n.name for n in nodes if n.op_type == "MatMulNBits"]
    for layer in ("q_proj", "gate_proj", "down_proj"):  # (the tiny model's lm_head reads its embedding: not a weight)
        assert any(layer in name for name in quantised), (layer, quantised)
    assert not [n.name for n in nodes if n.op_type == "MatMul" and "proj" in n.name]
    # it serves: scores as the fp32 export's (the scoring graph is untouched); a row's logits are the same alone or
    # beside another row of its length (activations are quantised per row: dynamic int8 fails this); constrained rows
    # still write only the numbers of their facts
    signals = verification_signals()[:4]
    eight_bit, fp32 = TrailOnnx(result.folder, threads=1), TrailOnnx(exported, threads=1)
    np.testing.assert_array_equal(eight_bit.score(*_inputs(signals)), fp32.score(*_inputs(signals)))
    prompts, cues = [render_prompt(s) for s in signals], [explanation_cue(s, 3.0 + i) for i, s in enumerate(signals)]
    rows = np.array([eight_bit._ids(p, 24) for p in prompts[:2]], dtype=np.int64)
    assert rows.shape == (2, 24)
    alone, together = _prefill_logits(eight_bit, rows[:1]), _prefill_logits(eight_bit, rows)
    np.testing.assert_allclose(alone[0], together[0], atol=1e-4, rtol=0)
    constrained = eight_bit.explain_batch(prompts, cues, [Decoding(constrained=True)] * 4)
    for text, prompt, cue in zip(constrained, prompts, cues):
        assert fact_numbers(text) <= fact_numbers(prompt + cue), text


def _prefill_logits(runtime: TrailOnnx, rows: np.ndarray) -> np.ndarray:
    """The generator's logits for unpadded ``rows`` of equal length, read from an empty cache."""
    return runtime.generator.run([GENERATOR_LOGITS], runtime.prompt_feeds(rows))[0]


def test_retention_keeps_the_newest_versions(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    for _ in range(3):
        export_model(checkpoint, repository, model_name="kept", keep_versions=2, verify_texts=1)
    assert sorted(p.name for p in (repository / "kept").iterdir()) == ["2", "3", "config.pbtxt"]


@pytest.mark.triton
def test_triton_serves_the_same_scores_and_explanations(checkpoint: Path, exported: Path, triton: LocalTriton,
                                                        triton_repository: Path) -> None:
    import tritonclient.grpc as grpcclient

    shutil.copytree(exported.parent, triton_repository / "trail_tiny", dirs_exist_ok=True)
    triton.load_model("trail_tiny")
    assert triton.model_ready("trail_tiny", "1")
    signals = verification_signals()[:6]
    prompts, features, current = _inputs(signals)
    cues = [explanation_cue(signals[0], 3.0)] + [""] * 5
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    tensors = []
    for name, array, dtype in (
        ("PROMPT", np.array([p.encode() for p in prompts], dtype=object).reshape(-1, 1), "BYTES"),
        ("FEATURES", features, "FP32"),
        ("CURRENT_LOG_COUNT", current.reshape(-1, 1), "FP32"),
        ("CUE", np.array([c.encode() for c in cues], dtype=object).reshape(-1, 1), "BYTES"),
        ("DECODING", np.array([[1, 0]] + [[0, 0]] * 5, dtype=np.int32), "INT32"),
    ):
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer("trail_tiny", tensors, client_timeout=60)
    served = result.as_numpy("LOG_COUNT").reshape(-1)
    texts = [t.decode() for t in result.as_numpy("EXPLANATION").reshape(-1)]
    embedded = TrailOnnx(exported, threads=1)
    np.testing.assert_allclose(served, embedded.score(prompts, features, current), atol=1e-5, rtol=0)
    np.testing.assert_allclose(served, TrailModel.load(checkpoint).predict_log_counts(signals), atol=1e-3, rtol=0)
    assert texts[0] == embedded.explain(prompts[0], cues[0], decoding=Decoding(constrained=True))
    assert texts[1:] == [""] * 5




@pytest.mark.triton
def test_triton_client_renders_the_format_the_served_version_reads(checkpoint: Path, exported: Path,
                                                                    triton: LocalTriton, triton_repository: Path,
                                                                    tmp_path: Path) -> None:
    """Version 1 reads prompt format 1, version 2 format 2 (the same weights, so each PyTorch reference differs
    only in its layout): the client learns each version's format from its responses and renders again."""
    from serving.triton_backend import TritonBackend

    old = tmp_path / "ckpt-v1"
    shutil.copytree(checkpoint, old)
    config = json.loads((old / "trail_config.json").read_text())
    (old / "trail_config.json").write_text(json.dumps({**config, "prompt_format": 1, "max_cue_tokens": 16}))
    model_dir = triton_repository / "trail_formats"
    shutil.copytree(exported, model_dir / "1")
    config_text = (exported.parent / "config.pbtxt").read_text()
    (model_dir / "config.pbtxt").write_text(config_text.replace('"trail_tiny"', '"trail_formats"'))
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    (model_dir / "1" / "manifest.json").write_text(json.dumps(
        {**manifest, "prompt_format": 1, "limits": {**manifest["limits"], "max_cue_tokens": 16}}))
    triton.load_model("trail_formats")
    backend = TritonBackend(triton.grpc_url, "trail_formats")
    signals = [s for s in verification_signals() if s.window_start_ms is not None][:4]
    for version, reference in (("1", TrailModel.load(old)), ("2", TrailModel.load(checkpoint))):
        if version == "2":
            shutil.copytree(exported, model_dir / "2")
            triton.load_model("trail_formats")
        forecasts = backend.score(signals)
        assert backend.info.version == version and backend._prompt_format == reference.config.prompt_format
        np.testing.assert_allclose([f.score for f in forecasts], reference.predict_log_counts(signals), atol=1e-3,
                                   rtol=0)
        texts = backend.explain(signals[:2], forecasts[:2])
        assert texts == reference.explain(signals[:2], [f.predicted_count for f in forecasts[:2]])


@pytest.mark.slow
@pytest.mark.triton
def test_the_shipped_model_exports_and_serves_identically(shipped_export, triton: LocalTriton,
                                                           triton_repository: Path) -> None:
    """The real SmolLM2 + shipped adapter: export verified (fp32 scores ≤ 1e-3, identical greedy texts, the int8
    scoring graph that ships ranks like PyTorch), then Triton and the embedded runtime give the same scores."""
    from serving.triton_backend import TritonBackend

    result = shipped_export
    assert result.scores.passed and result.texts.passed and result.scores.spearman > 0.999
    assert result.int8 is not None and result.int8.spearman >= 0.99
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["score_precision"].startswith("int8") and manifest["verification"]["int8"]["spearman"] >= 0.99
    shutil.copytree(result.folder.parent, triton_repository / "trail", dirs_exist_ok=True)
    triton.load_model("trail")
    signals = verification_signals()[:8]
    served = [f.score for f in TritonBackend(triton.grpc_url, "trail").score(signals)]
    embedded = TrailOnnx(result.folder).score(*_inputs(signals))
    np.testing.assert_allclose(served, embedded, atol=1e-4, rtol=0)


def test_an_int8_graph_that_ranks_differently_is_not_published(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    with pytest.raises(ExportRejected, match="int8 scores rank"):
        export_model(checkpoint, repository, model_name="int8", verify_texts=1, quantize=True,
                     min_int8_spearman=1.01)  # no Spearman can reach it
    assert not [p for p in (repository / "int8").iterdir() if p.name != "config.pbtxt"]


def test_a_format_1_model_keeps_serving_in_its_own_layout(checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint trained on prompt format 1 exports and serves: every runtime renders the format the model
    records (no calendar line, the forecast-only cue), and gives PyTorch's text."""
    from serving.onnx_backend import OnnxBackend

    old = tmp_path / "ckpt-v1"
    shutil.copytree(checkpoint, old)
    config = json.loads((old / "trail_config.json").read_text())
    config.pop("max_cue_tokens")  # as checkpoints of format 1 were saved
    (old / "trail_config.json").write_text(json.dumps({**config, "prompt_format": 1}))
    model = TrailModel.load(old)
    assert model.config.prompt_format == 1 and model.config.max_cue_tokens == 16
    result = export_model(old, tmp_path / "repo", model_name="v1", verify_texts=2)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["prompt_format"] == 1 and manifest["limits"]["max_cue_tokens"] == 16
    backend = OnnxBackend(tmp_path / "repo", "v1", threads=1)
    signals = [s for s in verification_signals() if s.window_start_ms is not None][:3]
    assert "date:" not in model.config.render_prompt(signals[0]) and "date:" in render_prompt(signals[0])
    forecasts = backend.score(signals)
    np.testing.assert_allclose([f.score for f in forecasts], model.predict_log_counts(signals), atol=1e-3, rtol=0)
    texts = backend.explain(signals, forecasts)
    assert texts == model.explain(signals, [f.predicted_count for f in forecasts])


def test_a_model_of_another_prompt_format_is_refused(checkpoint: Path, exported: Path, tmp_path: Path) -> None:
    """A checkpoint or version trained on another prompt layout cannot be loaded, exported or served."""
    from serving.onnx_backend import OnnxBackend
    from trail.prompt import PROMPT_FORMAT, PromptFormatMismatch

    other = tmp_path / "ckpt"
    shutil.copytree(checkpoint, other)
    config = json.loads((other / "trail_config.json").read_text())
    assert config["prompt_format"] == PROMPT_FORMAT
    (other / "trail_config.json").write_text(json.dumps({**config, "prompt_format": PROMPT_FORMAT + 1}))
    with pytest.raises(PromptFormatMismatch, match=f"prompt format {PROMPT_FORMAT + 1}"):
        export_model(other, tmp_path / "repo", model_name="other")
    repository = tmp_path / "served"
    shutil.copytree(exported, repository / "m" / "1")
    shutil.copytree(exported, repository / "m" / "2")
    manifest = json.loads((repository / "m" / "2" / "manifest.json").read_text())
    (repository / "m" / "2" / "manifest.json").write_text(json.dumps({**manifest, "prompt_format": 99}))
    with pytest.raises(PromptFormatMismatch, match="prompt format 99"):  # the runner the Triton model loads
        TrailOnnx(repository / "m" / "2")
    backend = OnnxBackend(repository, "m")
    assert backend.refresh() == 1  # version 2 is refused, version 1 serves


def test_a_stop_between_scoring_batches_gives_the_call_up_and_one_call_is_one_version(exported: Path,
                                                                                        tmp_path: Path) -> None:
    """The worker's merge asks ``cancelled`` between the backend's scoring batches, so a stop no longer waits for
    a whole window's scoring. A version published during a call serves from the next call on: the call that was
    running finishes on the version it started with (a window is never scored by two versions)."""
    from serving.onnx_backend import OnnxBackend
    from trail.errors import Cancelled

    repository = tmp_path / "served"
    shutil.copytree(exported, repository / "m" / "1")
    backend = OnnxBackend(repository, "m", batch_size=2, threads=1)
    signals = verification_signals()[:6]
    reference = backend.score(signals)
    asked: list[int] = []

    def publish_version_2_then_go_on() -> bool:
        if not asked:
            shutil.copytree(exported, repository / "m" / "2")
        asked.append(len(asked))
        return False

    again = backend.score(signals, publish_version_2_then_go_on)
    assert (len(asked), backend.info.version) == (2, "1")  # asked between its 3 batches; still version 1
    assert [f.score for f in again] == [f.score for f in reference]
    backend.score(signals[:1])
    assert backend.info.version == "2"
    with pytest.raises(Cancelled, match="after 2 of 6 items"):
        backend.score(signals, lambda: True)


def test_the_committed_triton_config_is_the_generated_one() -> None:
    """triton_models/trail/config.pbtxt is what export writes: a stale one (an input or output missing) would make
    Triton refuse the first exported version."""
    from serving.triton_trail import trail_model_config

    committed = Path(__file__).resolve().parent.parent / "triton_models" / "trail" / "config.pbtxt"
    assert committed.read_text() == trail_model_config("trail")
