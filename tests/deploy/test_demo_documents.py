"""The demo's document sender (issue 18): each format is accepted and yields an ECG Observation.

The live demo (tests/deploy/test_demo.py, marked live) runs it against the real stack; here its one
HTTP seam (``stack.http_json``) is routed into Django's test client on the real database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cds.ecg.models import EcgRecording
from deploy import stack
from tests.conftest import FhirTestClient, read_sample_record

pytestmark = pytest.mark.django_db


def test_it_sends_one_ecg_as_dicom_aecg_muse_and_a_philips_sample(
    service_account: FhirTestClient, monkeypatch: Any
) -> None:
    def http_json(method: str, url: str, body: Any = None, token: str | None = None, **_: Any) -> tuple[int, Any]:
        path = url.removeprefix("http://testserver")
        response = service_account.post(path, body) if method == "POST" else service_account.get(path)
        return response.status_code, json.loads(response.content or b"null")

    monkeypatch.setattr(stack, "http_json", http_json)
    samples, _ = read_sample_record(9)
    ecg = {"signal_uv": samples, "rate_hz": 500, "name": "9"}
    ids = stack.send_documents("http://testserver", "token", ecg)
    assert len(ids) == 4
    recordings = [EcgRecording.objects.get(logical_id=i) for i in ids]
    assert [len(r.leads) for r in recordings] == [12, 12, 12, 12]
    # DICOM and aECG carry the 12 leads as sent (same samples); MUSE stores 8 and derives the rest.
    assert recordings[0].waveform_sha256 == recordings[1].waveform_sha256
