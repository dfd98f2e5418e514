"""End-to-end smoke test on ../shared/data: pretrain, probe + full fine-tune, export, evaluate (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not (DATA / "ptb-xl-subset").exists(), reason="../shared/data not available")

TINY = ["--model.channels=16,16,32", "--model.d_model=32", "--model.n_res_blocks=0", "--model.cpc_offsets=1,3"]


def test_it_pretrains_finetunes_exports_and_evaluates(tmp_path, capsys) -> None:
    import torch

    from training import evaluate_foundation, finetune_foundation, foundation_export, pretrain_foundation

    pre = pretrain_foundation.main(
        [
            f"--data_dir={DATA}",
            f"--out_dir={tmp_path / 'pre'}",
            "--epochs=1",
            "--max_records=64",
            "--batch_size=32",
            "--device=cpu",
            "--model.cpc_negatives=sampled",
            *TINY,
        ]
    )
    assert pre["first_cpc_loss"] > 0
    common = [
        f"--data_dir={DATA}",
        f"--pretrained={tmp_path / 'pre' / 'best.pt'}",
        f"--out_dir={tmp_path / 'ft'}",
        f"--tokenizer_path={tmp_path / 'w' / 'foundation_tokenizer.json'}",
        "--epochs=1",
        "--max_records=64",
        "--model.dec_layers=1",
        "--model.dec_ff=32",
        "--model.max_len=12",
        "--model.vocab_size=300",
        "--device=cpu",
    ]
    finetune_foundation.main([*common, "--mode=probe"])
    export_path = tmp_path / "w" / "foundation.pt"
    finetune_foundation.main(
        [
            *common,
            "--mode=full",
            f"--export_path={export_path}",
            f"--probe_checkpoint={tmp_path / 'ft_probe' / 'best.pt'}",
        ]
    )
    ckpt = torch.load(export_path, weights_only=False)
    for key in (
        "model_config",
        "train_config",
        "step",
        "best_metric",
        "data_split_id",
        "git_sha",
        "probe",
        "reference_embeddings",
    ):
        assert key in ckpt
    assert "optimizer" not in ckpt  # shipped file; the run checkpoint keeps it
    assert "optimizer" in torch.load(tmp_path / "ft_full" / "best.pt", weights_only=False)
    diffs = foundation_export.export(export_path, tmp_path / "export", onnx=False)
    assert diffs["torchscript_classifier_max_abs_diff"] < 1e-4 and diffs["torchscript_generator_ids_equal"]
    assert diffs["torchscript_beam_equal"]
    capsys.readouterr()
    evaluate_foundation.main(
        ["--data", str(DATA), "--checkpoint", str(export_path), "--limit", "8", "--baseline", str(tmp_path / "none.pt")]
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "auroc_normal_abnormal",
        "macro_auroc_superclass",
        "bleu4",
        "rouge_l",
        "label_f1_from_text",
        "auroc_by_lead_subset",
        "seconds_per_ecg",
    ):
        assert key in last
    assert set(last["auroc_by_lead_subset"]) == {"I", "I+II", "limb6", "V1-V6", "all12"}


def test_it_rejects_unknown_config_keys() -> None:
    from training.config import parse_config
    from training.finetune_foundation import FinetuneConfig

    with pytest.raises(ValueError, match="unknown config key"):
        parse_config(FinetuneConfig(), ["--no_such_key=1"])
    with pytest.raises(ValueError, match="unknown model config key"):
        parse_config(FinetuneConfig(), ["--model.nope=1"])
    cfg = parse_config(FinetuneConfig(), ["--model.channels=8,16", "--epochs=3"])
    assert cfg.model.channels == (8, 16) and cfg.epochs == 3


WEIGHTS = REPO_ROOT / "ecg_models" / "weights"
SAMPLES = REPO_ROOT / "samples" / "ptbxl"


@pytest.mark.skipif(not (WEIGHTS / "foundation.pt").exists(), reason="shipped weights not built yet")
def test_it_evaluates_a_challenge_directory_with_the_shipped_weights(tmp_path, capsys) -> None:
    import wfdb

    from training import evaluate_foundation
    from training.data.ptbxl import LEADS_12, read_wfdb_12lead

    for i, (name, dx) in enumerate(
        (("00009", "426783006"), ("00057", "426783006"), ("00063", "164865005"), ("00131", "164865005"))
    ):
        signal, rate, _ = read_wfdb_12lead(SAMPLES / "records500" / "00000" / f"{name}_hr")
        wfdb.wrsamp(
            f"A{i:04d}",
            fs=rate,
            units=["mV"] * 12,
            sig_name=list(LEADS_12),
            p_signal=signal.T.astype("float64"),
            fmt=["16"] * 12,
            comments=["Age: 50", "Sex: Male", f"Dx: {dx}"],
            write_dir=str(tmp_path),
        )
    capsys.readouterr()
    evaluate_foundation.main(["--data", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["n_test"] == 4 and last["n_normal"] == 2
    assert set(last["auroc_by_lead_subset"]) == {"I", "I+II", "limb6", "V1-V6", "all12"}
    assert last["bleu4"] is None  # no reference text in a Challenge directory


def test_it_refuses_a_cuda_device_that_is_not_there(monkeypatch) -> None:
    import torch

    from training.config import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
