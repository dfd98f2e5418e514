"""Report text: builder/parser inverse, tokenizer round trip, metrics, the shipped tokenizer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ecg_models.foundation import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from training.foundation_text import (
    EMPTY_REASON,
    ReportBuilder,
    bleu4,
    decode,
    encode,
    label_check,
    load_tokenizer,
    report_text,
    rouge_l,
    train_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = REPO_ROOT / "ecg_models" / "weights" / "foundation_tokenizer.json"


def statements() -> pd.DataFrame:
    rows = {
        "NORM": ("normal ECG", 1.0, None, None, "NORM"),
        "IMI": ("inferior myocardial infarction", 1.0, None, None, "MI"),
        "LAO/LAE": ("left atrial overload/enlargement", 1.0, None, None, "HYP"),
        "PRC(S)": ("premature complex(es)", None, 1.0, None, None),
        "SR": ("sinus rhythm", None, None, 1.0, None),
        "BIGU": ("bigeminal pattern (unknown origin, SV or Ventricular)", None, None, 1.0, None),
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["description", "diagnostic", "form", "rhythm", "diagnostic_class"]
    )


def test_it_builds_deterministic_text_and_parses_it_back() -> None:
    b = ReportBuilder(statements())
    text = b.build(["PRC(S)", "IMI", "SR", "LAO/LAE"])
    assert (
        text == "sinus rhythm. inferior myocardial infarction. left atrial overload/enlargement. premature complex(es)."
    )
    assert b.parse(text) == {"PRC(S)", "IMI", "SR", "LAO/LAE"}
    assert b.build(["NORM", "SR"]) == "sinus rhythm. normal ecg."
    assert b.build(["unknown"]) == ""
    assert b.superclasses(b.parse(text)) == {"MI", "HYP"}


def test_it_round_trips_text_through_the_tokenizer() -> None:
    b = ReportBuilder(statements())
    texts = [b.build(c) for c in (["SR", "NORM"], ["BIGU", "IMI", "PRC(S)"], ["SR", "LAO/LAE"])]
    tok = train_tokenizer([f"{p}." for p in b.phrase.values()] + texts, vocab_size=120)
    assert [tok.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]", "[UNK]")] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    for text in texts:
        row = encode(tok, text, max_len=40)
        assert row[0] == BOS_ID and EOS_ID in row.tolist()
        assert decode(tok, row.tolist()) == text
        assert decode(tok, row[1:].tolist()) == text  # generator output has no BOS
    assert report_text(tok, b, [EOS_ID]) == ("", EMPTY_REASON)


def test_it_scores_text_and_checks_labels() -> None:
    b = ReportBuilder(statements())
    refs = ["sinus rhythm. normal ecg.", "sinus rhythm. inferior myocardial infarction."]
    assert bleu4(refs, refs) == pytest.approx(100.0)
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    check = label_check(b, ["sinus rhythm. normal ecg.", "sinus rhythm. normal ecg."], [["SR", "NORM"], ["SR", "IMI"]])
    assert check["per_superclass"]["NORM"]["precision"] == 0.5
    assert check["per_superclass"]["NORM"]["recall"] == 1.0
    assert check["per_superclass"]["MI"]["recall"] == 0.0


@pytest.mark.skipif(not TOKENIZER.exists(), reason="shipped tokenizer not built yet")
def test_it_round_trips_the_shipped_tokenizer() -> None:
    tok = load_tokenizer(TOKENIZER)
    assert [tok.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]", "[UNK]")] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    text = "sinus rhythm. left anterior fascicular block. non-specific st changes."
    assert decode(tok, encode(tok, text, 40).tolist()) == text
