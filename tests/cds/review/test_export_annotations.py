"""Reviewed annotations export in the PTB-XL layout, read back by training's loader, and train a model."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from cds.analysis.models import AnalysisJob
from cds.review import services
from cds.review.models import Review
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

pytestmark = pytest.mark.django_db

# (PTB-XL sample, AI score, verdict, SCP labels): flagged ECGs confirmed or rejected, one re-annotated.
CASES = [
    (9, 0.3, "accept", []),  # not flagged (re-annotation), confirmed normal -> NORM
    (38, 2.0, "reject", []),  # false positive -> NORM
    (57, 2.2, "accept", ["ASMI", "SR"]),
    (63, 2.5, "accept", ["IMI"]),
    (65, 0.4, "accept", []),
    (116, 1.9, "accept", ["LVH"]),
]


@pytest.fixture
def reviewed(analysed_ecg: Callable[..., AnalysisJob], clinician: Any, senior_clinician: Any) -> list[Review]:
    reviews = []
    for n, (ecg_id, score, verdict, labels) in enumerate(CASES):
        job = analysed_ecg(ecg_id=ecg_id, score=score, review_priority=0.9, effective=f"2024-03-{n + 1:02d}T10:00:00Z")
        review = Review.objects.get(job=job)
        services.review_claim(review=review, user=clinician.user)
        if verdict == "accept":
            services.review_accept(review=review, user=clinician.user)
        else:
            services.review_reject(review=review, user=clinician.user, reason="noise")
        if labels:
            services.review_label(review=review, user=clinician.user, scp_labels=labels)
        reviews.append(review)
    moved = [{"lead": "V2", "start_ms": 1200.0, "end_ms": 1700.0}]
    services.review_correct_intervals(review=reviews[3], user=clinician.user, intervals=moved)
    for review in reviews:  # only signed reviews become training data
        services.review_sign(review=review, user=senior_clinician.user, password="pw-senior")
    return reviews


def features(signal: np.ndarray) -> np.ndarray:
    """Per-lead amplitude spread and slope: simple features a linear model can fit."""
    return np.concatenate([np.nanstd(signal, axis=1), np.nanmean(np.abs(np.diff(signal, axis=1)), axis=1)])


def test_it_exports_what_the_training_loader_reads_back_and_a_model_trains_on_it(
    reviewed: list[Review], tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    out = io.StringIO()
    call_command("export_annotations", out=str(tmp_path), stdout=out)
    assert "wrote 6 reviewed ECGs" in out.getvalue()

    index = load_ptbxl_index(tmp_path)
    assert list(index["label"]) == ["normal", "normal", "abnormal", "abnormal", "normal", "abnormal"]
    assert index.loc[2, "scp_dict"] == {"ASMI": 100.0, "SR": 100.0}
    assert json.loads(index.loc[3, "intervals"]) == [{"lead": "V2", "start_ms": 1200.0, "end_ms": 1700.0}]
    assert set(index["fold"]) <= set(range(1, 11)) and index["fold"].nunique() == 1  # one patient, one fold

    records = [load_ptbxl_record(tmp_path, row) for _, row in index.iterrows()]
    first = records[0]
    recording = reviewed[0].recording
    assert first.sample_rate_hz == 500 and first.sex == "female" and first.signal.shape == (12, recording.n_samples)
    np.testing.assert_allclose(first.signal * 1000.0, recording.waveform(), atol=0.51)  # exact µV round trip

    x = np.stack([features(r.signal) for r in records])
    y = np.array([r.label == "abnormal" for r in records])
    model = LogisticRegression(C=10.0, max_iter=2000).fit((x - x.mean(0)) / (x.std(0) + 1e-9), y)
    assert model.score((x - x.mean(0)) / (x.std(0) + 1e-9), y) >= 5 / 6
    assert model.coef_.shape == (1, 24)


def test_it_fine_tunes_the_shipped_foundation_model_on_exported_annotations(
    reviewed: list[Review], tmp_path: Path
) -> None:
    """Re-annotation closes the loop: clinicians' labels, exported, fine-tune our own model's head."""
    import torch

    from ecg_models.foundation import from_checkpoint
    from inference.preprocessing import foundation_inputs
    from tests.conftest import REPO_ROOT

    call_command("export_annotations", out=str(tmp_path), stdout=io.StringIO())
    index = load_ptbxl_index(tmp_path)
    records = [load_ptbxl_record(tmp_path, row) for _, row in index.iterrows()]
    inputs = [foundation_inputs(r.signal, r.sample_rate_hz) for r in records]  # the serving preprocessing
    signal = torch.from_numpy(np.stack([i.signal for i in inputs]))
    lead_mask = torch.from_numpy(np.stack([i.lead_mask for i in inputs]))
    target = torch.tensor([float(r.label == "abnormal") for r in records])

    torch.manual_seed(0)
    model = from_checkpoint(REPO_ROOT / "ecg_models" / "weights" / "foundation.pt")
    for parameter in model.parameters():  # head-only fine-tune: the pretrained encoder stays frozen
        parameter.requires_grad = False
    trainable = list(model.heads.abnormal.parameters())
    for parameter in trainable:
        parameter.requires_grad = True
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    model.eval()  # no dropout: the loss curve is deterministic

    def loss() -> torch.Tensor:
        logit = model(signal, lead_mask)[0].reshape(-1)
        return torch.nn.functional.binary_cross_entropy_with_logits(logit, target)

    first = float(loss())
    for _ in range(30):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert float(loss()) < 0.5 * first  # it learns the reviewers' labels
    assert any(not torch.equal(a, b) for a, b in zip(before, trainable, strict=True))
    encoder = from_checkpoint(REPO_ROOT / "ecg_models" / "weights" / "foundation.pt").encoder.state_dict()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.items())  # encoder untouched
