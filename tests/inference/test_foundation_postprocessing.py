"""Reading the foundation model's outputs without the tokenizers library, identically to training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.export_foundation import tokenizer_vocabulary
from inference.foundation_postprocessing import (
    NO_TEXT,
    FoundationServing,
    decode_report,
    foundation_result,
    review_priority,
)
from tests.conftest import LEADS_12, REPO_ROOT

TOKENIZER = REPO_ROOT / "ecg_models" / "weights" / "foundation_tokenizer.json"
SPECIAL = frozenset({0, 1, 2, 3})


@pytest.fixture(scope="module")
def tokenizer_path() -> Path:
    if not TOKENIZER.exists():
        pytest.skip("the foundation tokenizer is not shipped yet")
    return TOKENIZER


def test_it_decodes_generated_ids_exactly_like_the_tokenizers_library(tokenizer_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    vocabulary = tokenizer_vocabulary(tokenizer_path)
    texts = [
        "sinus rhythm. normal ecg.",
        "sinus tachycardia. anteroseptal myocardial infarction. left ventricular hypertrophy.",
        "atrial fibrillation. non-specific st changes.",
    ]
    for text in texts:
        ids = [1, *tok.encode(text).ids, 2, 0, 0]  # BOS ... EOS PAD PAD, as the generator returns them
        assert decode_report(ids, vocabulary, SPECIAL) == tok.decode(ids, skip_special_tokens=True).strip()


def test_it_scores_review_priority_like_the_training_module() -> None:
    from training.foundation_active import review_priority as training_priority

    rng = np.random.default_rng(0)
    embedding, reference = rng.normal(size=(1, 8)), rng.normal(size=(20, 8))
    a = embedding / np.linalg.norm(embedding)
    r = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    novelty = float(np.clip((1 - (a @ r.T).max()) / 2, 0, 1))  # what the served module computes
    for probability, z in [(0.5, None), (0.9, -1.0), (0.1, 2.5), (0.97, 3.0)]:
        expected = training_priority(probability, z, embedding[0], reference)
        assert review_priority(probability, z, novelty) == pytest.approx(expected, abs=1e-4)


def test_it_never_returns_empty_report_text() -> None:
    serving = FoundationServing(
        version_label="foundation-test",
        threshold=0.5,
        superclasses=("NORM", "MI", "STTC", "CD", "HYP"),
        statement_codes=("NORM",),
        vocabulary=("[PAD]", "[BOS]", "[EOS]", "[UNK]", "\u2581sinus"),
        special_ids=SPECIAL,
    )
    outputs = {
        "abnormal_logit__0": np.array([[0.0]], dtype=np.float32),
        "superclass_logits__1": np.zeros((1, 5), dtype=np.float32),
        "statement_logits__2": np.array([[2.0]], dtype=np.float32),
        "novelty__4": np.array([[0.2]], dtype=np.float32),
        "token_ids__5": np.array([[2, 0, 0]]),
    }
    lead_mask = np.array([True] * 6 + [False] * 6)
    result = foundation_result(
        outputs,
        lead_mask,
        serving=serving,
        detector_z=None,
        server_model_version="t",
        timings_ms={},
    )
    assert result.report_text == NO_TEXT
    assert result.probability_abnormal == 0.5 and result.leads_used == LEADS_12[:6]
    spoken = foundation_result(
        outputs | {"token_ids__5": np.array([[4, 2]])},
        lead_mask,
        serving=serving,
        detector_z=None,
        server_model_version="t",
        timings_ms={},
    )
    assert spoken.report_text == "sinus"
    assert spoken.statement_probabilities == {"NORM": pytest.approx(0.8808, abs=1e-4)}
    assert spoken.threshold == 0.5
