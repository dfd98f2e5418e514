"""The served foundation model: classifier outputs and report ids from one encoder pass (issue 14, item 3).

On the shipped checkpoint: the one module gives what the former two models gave (the eager
classifier and the KV-cached greedy generator, each with its own encoder pass), runs the encoder
once per call, and its export writes one model, retires ``ecg_report`` and checks itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.model_repository import FOUNDATION_MODEL, RETIRED_REPORT_MODEL, SERVING_FILE, WEIGHTS

torch = pytest.importorskip("torch", reason="the served module needs torch (the ml extra)")

from ecg_models.foundation import FoundationGreedyGenerator, from_checkpoint  # noqa: E402 after importorskip
from inference.export_foundation import export_foundation, served_foundation  # noqa: E402 after importorskip
from inference.foundation_postprocessing import FOUNDATION_OUTPUTS_ALL  # noqa: E402 after importorskip

CHECKPOINT = WEIGHTS / "foundation.pt"
pytestmark = pytest.mark.skipif(not CHECKPOINT.exists(), reason="the foundation checkpoint is not shipped")


def example(cfg: object, batch: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    signal = torch.randn(batch, cfg.n_leads, cfg.n_samples, generator=g) * 0.3  # type: ignore[attr-defined]
    mask = torch.ones(batch, cfg.n_leads, dtype=torch.bool)  # type: ignore[attr-defined]
    mask[1, 6:] = False  # limb leads only
    measured = (torch.eye(batch, cfg.n_measured),) if cfg.condition_on_measured else ()  # type: ignore[attr-defined]
    return (signal, mask, *measured)


def test_one_pass_gives_the_outputs_of_the_former_classifier_and_report_models() -> None:
    torch.set_num_threads(1)
    parts = served_foundation(CHECKPOINT)
    model = from_checkpoint(CHECKPOINT).eval()
    inputs = example(parts.cfg)
    with torch.no_grad():
        outputs = parts.module(*inputs)
        abnormal, superclass, statement, embedding = model(*inputs[:2])
        ids = FoundationGreedyGenerator(model, kv_cache=True)(*inputs[:2], inputs[2] if len(inputs) > 2 else None)
    assert len(outputs) == len(FOUNDATION_OUTPUTS_ALL)
    for served, separate in zip(outputs[:4], (abnormal.unsqueeze(-1), superclass, statement, embedding), strict=True):
        assert (served.sigmoid() - separate.sigmoid()).abs().max() <= 1e-5
    assert outputs[4].shape == (3, 1) and bool(((outputs[4] >= 0) & (outputs[4] <= 1)).all())
    assert outputs[5].dtype == torch.int64 and torch.equal(outputs[5], ids)


def test_the_served_module_runs_the_encoder_once_per_call() -> None:
    torch.set_num_threads(1)
    parts = served_foundation(CHECKPOINT)
    calls: list[int] = []
    parts.module.generator.memory.encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        parts.module(*example(parts.cfg, batch=2))
    assert calls == [1]


def test_the_export_writes_one_model_retires_the_report_model_and_checks_itself(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    (tmp_path / RETIRED_REPORT_MODEL / "1").mkdir(parents=True)  # a repository written before issue 14
    [check] = export_foundation(tmp_path, CHECKPOINT)
    assert check["max_abs_diff"] <= 1e-5 and check["token_ids_equal"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [FOUNDATION_MODEL]
    facts = json.loads((tmp_path / FOUNDATION_MODEL / "1" / SERVING_FILE).read_text())
    assert {"threshold_prob_abnormal", "statement_codes", "vocabulary", "special_ids"} <= set(facts)
    config = (tmp_path / FOUNDATION_MODEL / "configs" / "cpu.pbtxt").read_text()
    assert 'name: "token_ids__5" data_type: TYPE_INT64' in config
    loaded = torch.jit.load(str(tmp_path / FOUNDATION_MODEL / "1" / "model.pt"))
    parts = served_foundation(CHECKPOINT)
    inputs = example(parts.cfg, batch=2)
    with torch.no_grad():
        assert torch.equal(loaded(*inputs)[5], parts.module(*inputs)[5])
