"""Smoke test: train a tiny detector for one epoch on a PTB-XL-layout folder built from the samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from ecg_models.anomaly_detector import from_checkpoint
from training import evaluate_detector, train_detector

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
pytestmark = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")
# Normals in every split, abnormals in validation and test; 131 (abnormal, fold 1) is not trained on.
FOLDS = {9: 1, 131: 1, 57: 9, 63: 9, 38: 10, 65: 10, 116: 10, 128: 10}
TINY = ["--model.d_model=16", "--model.n_heads=2", "--model.record_layers=1", "--model.max_beats=8"]


def make_dataset(tmp_path: Path) -> Path:
    """Copy the samples into tmp_path/data/ptbxl with folds reassigned as in FOLDS."""
    root = tmp_path / "data" / "ptbxl"
    shutil.copytree(SAMPLES, root)
    db = pd.read_csv(root / "ptbxl_database.csv")
    db["strat_fold"] = db["ecg_id"].map(FOLDS)
    db.to_csv(root / "ptbxl_database.csv", index=False)
    return root.parent


def test_it_trains_checkpoints_and_evaluates_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dataset(tmp_path)
    out = tmp_path / "run"
    cache = tmp_path / "attributes.csv"
    argv = [
        f"--data_dir={data}",
        f"--out_dir={out}",
        f"--attribute_cache={cache}",
        "--epochs=1",
        "--batch_size=4",
        "--seed=3",
        *TINY,
    ]
    summary = train_detector.main(argv)
    assert summary["epochs_run"] == 1
    ckpt = torch.load(out / "best.pt", weights_only=False)
    for key in (
        "model",
        "model_config",
        "train_config",
        "step",
        "best_metric",
        "optimizer",
        "data_split_id",
        "git_sha",
        "operating_point",
    ):
        assert key in ckpt
    assert ckpt["train_config"]["seed"] == 3
    assert from_checkpoint(out / "best.pt").cfg.d_model == 16
    assert cache.exists()

    capsys.readouterr()
    evaluate_detector.main(["--data", str(data), "--checkpoint", str(out / "best.pt"), "--attribute-cache", str(cache)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "auroc",
        "f1",
        "sensitivity",
        "specificity",
        "precision_at_recall_90",
        "n_normal",
        "n_abnormal",
        "n_excluded",
        "seconds_per_ecg",
    ):
        assert key in result
    assert (result["n_normal"], result["n_abnormal"]) == (1, 3)


def test_it_rejects_unknown_config_keys_and_bad_types() -> None:
    with pytest.raises(ValueError, match="unknown config key"):
        train_detector.parse_config(["--no_such_key=1"])
    with pytest.raises(ValueError, match="unknown model config key"):
        train_detector.parse_config(["--model.no_such_key=1"])
    with pytest.raises(ValueError, match="epochs: expected int"):
        train_detector.parse_config(["--epochs=many"])
    cfg = train_detector.parse_config(
        ["--config", str(REPO_ROOT / "training" / "configs" / "detector.toml"), "--epochs=2", "--model.use_trend=false"]
    )
    assert cfg.epochs == 2 and cfg.model.use_trend is False and cfg.model.d_model == 128


def test_it_evaluates_a_challenge_directory_with_the_stored_operating_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import wfdb

    from training.data.ptbxl import LEADS_12, load_ptbxl_index, load_ptbxl_record

    data = make_dataset(tmp_path)
    out = tmp_path / "run"
    argv = [
        f"--data_dir={data}",
        f"--out_dir={out}",
        f"--attribute_cache={tmp_path / 'a.csv'}",
        "--epochs=1",
        "--batch_size=4",
        *TINY,
    ]
    train_detector.main(argv)
    challenge = tmp_path / "challenge"
    challenge.mkdir()
    index = load_ptbxl_index(SAMPLES)
    for i, (name, dx) in enumerate((("A1", "426783006"), ("A2", "164889003"), ("A3", "426783006"), ("A4", ""))):
        signal = load_ptbxl_record(SAMPLES, index.iloc[i]).signal
        comments = ["Age: 50", "Sex: Male"] + ([f"Dx: {dx}"] if dx else [])
        wfdb.wrsamp(
            name,
            fs=500,
            units=["mV"] * 12,
            sig_name=list(LEADS_12),
            p_signal=signal.T.astype(float),
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            comments=comments,
            write_dir=str(challenge),
        )
    capsys.readouterr()
    evaluate_detector.main(["--data", str(challenge), "--checkpoint", str(out / "best.pt")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["n_normal"], result["n_abnormal"], result["n_excluded"]) == (2, 1, 1)
    assert result["split"].startswith("Challenge")
