"""Signed labels carry SNOMED CT (issue 15), checked against the public PhysioNet/CinC Challenge mapping."""

from __future__ import annotations

import csv

import pytest

from cds.review.scp import SCP_STATEMENTS, SNOMED_OF_SCP_LABEL, scp_concept
from tests.conftest import SHARED_DATA_DIR

MAPPING_DIR = SHARED_DATA_DIR / "challenge-sample"


def test_every_label_is_coded_in_snomed_first_with_the_scp_code_beside_it() -> None:
    sinus = scp_concept("SR")
    assert [(c["system"], c["code"]) for c in sinus["coding"]] == [
        ("http://snomed.info/sct", "426783006"),
        ("urn:ecg-cds:CodeSystem:ptbxl-scp", "SR"),
    ]
    assert sinus["text"] == SCP_STATEMENTS["SR"].description
    assert [c["code"] for c in scp_concept("NORM")["coding"]] == ["NORM"]  # no equal SNOMED concept: SCP alone
    assert set(SNOMED_OF_SCP_LABEL) <= set(SCP_STATEMENTS)


@pytest.mark.skipif(not MAPPING_DIR.is_dir(), reason="the Challenge mapping tables are in /work/shared/data")
def test_every_snomed_code_is_one_the_challenge_mapping_uses() -> None:
    known = {
        row["SNOMEDCTCode"]
        for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv")
        for row in csv.DictReader((MAPPING_DIR / name).open())
    }
    assert set(SNOMED_OF_SCP_LABEL.values()) - known == set()
