"""Philips (Sierra) XML through sierraecg on a real XLI-compressed sample (see samples/README.md)."""

from __future__ import annotations

import numpy as np
import pytest

from cds.core.exceptions import FhirError
from cds.ecg.xml_ecg import xml_ecg_read
from tests.conftest import LEADS_12, REPO_ROOT

WHERE = "DocumentReference.content[0].attachment.data"
SAMPLE = REPO_ROOT / "samples" / "philips" / "129DYPRG.xml"


def test_it_decodes_twelve_leads_that_obey_einthoven() -> None:
    document = xml_ecg_read(SAMPLE.read_bytes(), expression=WHERE)
    assert document.format == "philips" and document.leads == LEADS_12
    assert document.sample_rate_hz == 500 and {c.size for c in document.codes} == {5500}
    assert set(document.factor_uv) == {5.0} and (document.effective, document.gender) == ("2011-12-01", "male")
    lead = dict(zip(document.leads, document.codes, strict=True))
    # The decoded limb leads are consistent (III = II − I, aVR = −(I + II)/2) to 2 codes (10 µV) over the
    # first 10 s, which a wrong XLI decode or lead order would not give.
    first = slice(0, 5000)
    assert np.abs(lead["III"][first] - (lead["II"][first] - lead["I"][first])).max() <= 2
    assert np.abs(lead["aVR"][first] + (lead["I"][first] + lead["II"][first]) / 2).max() <= 2
    # Amplitudes are an ECG's: a few mV peak to peak.
    assert 300 < np.ptp(lead["II"][first]) * 5.0 < 5000


def test_it_refuses_an_unsupported_version_and_missing_resolution() -> None:
    data = SAMPLE.read_bytes()
    with pytest.raises(FhirError) as caught:
        xml_ecg_read(data.replace(b"<documentversion>1.03<", b"<documentversion>9.99<"), expression=WHERE)
    assert "Philips XML: Files of type SierraECG 9.99 are unsupported" in caught.value.issues[0].diagnostics
    with pytest.raises(FhirError) as caught:
        xml_ecg_read(data.replace(b"<signalresolution>5<", b"<signalresolution>?<"), expression=WHERE)
    assert "signalresolution is missing or not a number" in caught.value.issues[0].diagnostics
