"""Tests of the deterministic label rules (PTB-XL superclasses and Challenge SNOMED codes)."""

from __future__ import annotations

import pandas as pd
import pytest

from training.data.challenge import SINUS_RHYTHM_SNOMED, label_from_dx, parse_header_comments
from training.data.ptbxl import label_from_superclasses, parse_scp_codes
from training.data.splits import split_records


@pytest.mark.parametrize(
    ("superclasses", "label"),
    [
        ({"NORM"}, "normal"),
        ({"NORM", "CD"}, "abnormal"),
        ({"MI"}, "abnormal"),
        ({"STTC", "HYP"}, "abnormal"),
        (set(), None),
    ],
)
def test_it_labels_norm_only_as_normal_and_any_other_superclass_as_abnormal(
    superclasses: set[str], label: str | None
) -> None:
    assert label_from_superclasses(frozenset(superclasses)) == label


def test_it_gives_the_same_label_whatever_the_set_order() -> None:
    assert label_from_superclasses(frozenset(["CD", "NORM"])) == label_from_superclasses(frozenset(["NORM", "CD"]))


def test_it_parses_scp_codes_with_missing_likelihoods() -> None:
    assert parse_scp_codes("{'NORM': None}") == {"NORM": None}
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}") == {"NORM": 100.0, "SR": 0.0}
    assert parse_scp_codes("") == {}
    assert parse_scp_codes(float("nan")) == {}
    with pytest.raises(ValueError, match="not a dict"):
        parse_scp_codes("['NORM']")


@pytest.mark.parametrize(
    ("codes", "label"),
    [
        ({SINUS_RHYTHM_SNOMED}, "normal"),
        ({SINUS_RHYTHM_SNOMED, "164889003"}, "abnormal"),
        ({"164889003"}, "abnormal"),
        (set(), None),
    ],
)
def test_it_labels_sinus_rhythm_alone_as_normal_for_challenge_records(codes: set[str], label: str | None) -> None:
    assert label_from_dx(frozenset(codes)) == label


def test_it_parses_challenge_header_comments() -> None:
    meta = parse_header_comments(["Age: 54", "Sex: Female", "Dx: 426783006,164889003", "no colon here"])
    assert meta == {"age": "54", "sex": "Female", "dx": "426783006,164889003"}


def test_it_reports_unlabelled_records_instead_of_dropping_them() -> None:
    index = pd.DataFrame(
        {
            "record_id": ["a", "b", "c", "d", "e"],
            "label": ["normal", None, "abnormal", "normal", "normal"],
            "fold": [1, 2, 9, 10, None],
            "source_split": [None, None, None, None, "test"],
        }
    )
    splits = split_records(index)
    assert list(splits["train"]["record_id"]) == ["a"]
    assert list(splits["val"]["record_id"]) == ["c"]
    assert list(splits["test"]["record_id"]) == ["d"]
    assert set(splits["excluded"]["reason"]) == {
        "no diagnostic label",
        "training-only folder, source_split=test (possible patient overlap)",
    }
    with pytest.raises(ValueError, match="overlapping folds"):
        split_records(index, val_fold=3)


@pytest.mark.parametrize(
    ("codes", "superclasses", "label"),
    [
        ({"NORM": 100.0, "SR": 0.0}, {"NORM"}, "normal"),
        ({"NORM": 100.0, "SARRH": 0.0}, {"NORM"}, "normal"),  # sinus arrhythmia: a normal variant
        ({"NORM": 100.0, "SR": 0.0, "ABQRS": 0.0}, {"NORM"}, "normal"),  # a form kept under a NORM diagnosis
        ({"NORM": 100.0, "SBRAD": 0.0}, {"NORM"}, "abnormal"),
        ({"NORM": 100.0, "SR": 0.0, "PVC": 0.0}, {"NORM"}, "abnormal"),
        ({"NORM": 100.0, "AFIB": 0.0}, {"NORM"}, "abnormal"),
        ({"IMI": 100.0, "SR": 0.0}, {"MI"}, "abnormal"),
        ({}, set(), None),
    ],
)
def test_the_clinical_normal_is_norm_in_sinus_rhythm_without_rhythm_or_ectopy_statements(
    codes: dict[str, float], superclasses: set[str], label: str | None
) -> None:
    from training.data.ptbxl import clinical_label

    assert clinical_label(codes, frozenset(superclasses)) == label
