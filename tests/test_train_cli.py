"""`trail train` and `trail export` as a user runs them: a tiny model trained on a CSV, checkpointed with its
metadata, exported into a repository; bad arguments get one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.quantize import MIN_INT8_SPEARMAN

from .conftest import run_trail

HOUR = 3600


def _csv(path: Path) -> Path:
    rng = random.Random(3)
    rows = ["sku,time,customer,name,cat"]
    for hour in range(8):
        for item in range(10):
            for n in range(rng.randrange(0, 2 + item)):
                rows.append(f"s{item},{1_700_000_000 + hour * HOUR + n * 7 + item},c{rng.randrange(30)},"
                            f"ITEM {item},{'A' if item % 2 else 'B'}")
    rows[1:] = sorted(rows[1:], key=lambda r: int(r.split(",")[1]))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_then_export_a_tiny_model(tmp_path: Path) -> None:
    data = _csv(tmp_path / "events.csv")
    out = tmp_path / "run"
    trained = run_trail("train", "csv", "--path", str(data), "--map", "item_id=sku,ts=time,user_id=customer,"
                        "title=name,category=cat", "--window", "1h", "--backbone", "tiny", "--steps", "2",
                        "--batch-size", "4", "--per-window", "8", "--out", str(out), "--threads", "1")
    assert trained.returncode == 0, trained.stderr.decode()[-2000:]
    metadata = json.loads((out / "training_metadata.json").read_text())
    assert metadata["steps_completed"] == 2 and metadata["window"] == "1h" and len(metadata["events_sha256"]) == 64
    assert metadata["command"].startswith("trail train csv")
    # a warm start trains on from that checkpoint's weights and config: the --backbone default (smollm2) is not used
    warm = run_trail("train", "csv", "--path", str(data), "--map", "item_id=sku,ts=time,user_id=customer,"
                     "title=name,category=cat", "--init-from", str(out), "--seed", "1", "--steps", "1",
                     "--batch-size", "4", "--per-window", "8", "--out", str(tmp_path / "warm"), "--threads", "1")
    assert warm.returncode == 0, warm.stderr.decode()[-2000:]
    continued = json.loads((tmp_path / "warm" / "training_metadata.json").read_text())
    assert continued["initialised_from"] == str(out) and continued["steps_completed"] == 1
    assert continued["model_config"]["backbone"] == "tiny" and continued["train_config"]["seed"] == 1
    assert continued["window"] == "1h"  # the checkpoint's windows, not the csv default
    refit = run_trail("refit-head", str(out), "csv", "--path", str(data), "--map", "item_id=sku,ts=time,user_id=customer,"
                      "title=name,category=cat", "--epochs", "2", "--threads", "1", "--schedule", "cosine",
                      "--states-cache", str(tmp_path / "states"))
    assert refit.returncode == 0, refit.stderr.decode()[-2000:]
    assert b"epoch" in refit.stdout and b"kept, validation NDCG@20" in refit.stdout
    refit_record = json.loads((out / "training_metadata.json").read_text())["head_refit"]
    # one entry per window of the training pool and of the validation candidates (`trail evaluate` reads the
    # latter), and the int8 guard's fp32 and int8 states of the verification items
    entries = refit_record["train_windows"] + refit_record["validation_windows"] + 2
    assert len(list((tmp_path / "states").glob("*.safetensors"))) == entries
    assert len(refit_record["validation_ndcg20"]) == 3 and refit_record["command"].startswith("trail refit-head")
    assert refit_record["config"]["schedule"] == "cosine"
    assert refit_record["config"]["per_window"] == 8  # the fine-tune's balanced pool, unless --per-window says
    kept_int8 = refit_record["int8_spearman"][refit_record["chosen_epoch"]]  # the export's int8 check, per epoch
    assert len(refit_record["int8_spearman"]) == 3 and (refit_record["chosen_epoch"] == 0 or kept_int8 >= MIN_INT8_SPEARMAN)
    exported = run_trail("export", str(out), "--repository", str(tmp_path / "repo"), "--model-name", "tiny")
    assert exported.returncode == 0, exported.stderr.decode()[-2000:]
    assert b"version 1 published" in exported.stdout
    manifest = json.loads((tmp_path / "repo" / "tiny" / "1" / "manifest.json").read_text())
    assert manifest["events_sha256"] == metadata["events_sha256"]
    assert manifest["training"]["head_refit"]["chosen_epoch"] == refit_record["chosen_epoch"]
    every = run_trail("refit-head", str(tmp_path / "warm"), "csv", "--path", str(data), "--map",
                      "item_id=sku,ts=time,user_id=customer,title=name,category=cat", "--epochs", "1", "--threads", "1",
                      "--per-window", "0", "--states-cache", "")
    assert every.returncode == 0, every.stderr.decode()[-2000:]
    every_record = json.loads((tmp_path / "warm" / "training_metadata.json").read_text())["head_refit"]
    assert every_record["config"]["per_window"] == 0 and every_record["train_examples"] > 0


def test_bad_training_and_export_arguments_get_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["train", "online-retail", "--steps", "0"], b"expected a positive integer, got '0'"),
        (["train", "online-retail", "--lora-targets", ","], b"--lora-targets needs at least one module name"),
        (["export", str(tmp_path)], b"is not a TRAIL checkpoint"),
        (["train", "online-retail", "--init-from", str(tmp_path)], b"is not a TRAIL checkpoint"),
        (["refit-head", str(tmp_path), "online-retail"], b"is not a TRAIL checkpoint"),
        (["refit-head", "models/online-retail", "online-retail", "--epochs", "0"], b"expected a positive integer"),
        (["refit-head", "models/online-retail", "online-retail", "--min-int8-spearman", "2"],
         b"expected a number from 0 to 1, got '2'"),
        (["refit-head", "models/online-retail", "online-retail", "--per-window", "-1"],
         b"expected an integer >= 0, got '-1'"),
        (["evaluate", "online-retail", "--ablation", "nope"], b"argument --ablation: expects NAME=CHECKPOINT, got 'nope'"),
        (["evaluate", "online-retail", "--ablation", "trail=models/online-retail"], b"names the main checkpoint"),
        (["evaluate", "online-retail", "--ablation", "x=models/online-retail", "--ablation",
          "trail_x=models/online-retail"], b"two checkpoints would be reported under one name"),
        (["train", "online-retail", "--init-from", "models/stackexchange"],
         b"models/stackexchange was trained on stackexchange, not online-retail"),
    ):
        done = run_trail(*args)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and b"Traceback" not in done.stderr


def test_an_ablation_is_reported_as_trail_something_never_as_a_baseline() -> None:
    from training.cli import _named_checkpoint

    # "shipped" alone was taken for a baseline: the report called it the best baseline on MAE
    assert _named_checkpoint("shipped=models/online-retail") == ("trail_shipped", Path("models/online-retail"))
    assert _named_checkpoint("trail_60-steps=models/online-retail")[0] == "trail_60-steps"
