"""Review to EHR end to end: analysis written back, clinician signs, the EHR's report is final then amended.

The EHR is a real R4 server (sekmet-fhir, the write-back tests' fixture); deliveries run the outbox
task directly, as a worker would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from cds.analysis.models import AnalysisJob
from cds.review.models import Review
from cds.writeback.models import OutboxMessage
from cds.writeback.tasks import outbox_message_deliver
from tests.cds.writeback.conftest import Sekmet, sekmet, writeback_settings  # noqa: F401 - fixtures
from tests.cds.writeback.helpers import identifier

pytestmark = pytest.mark.django_db


def deliver(key: str) -> OutboxMessage:
    message = OutboxMessage.objects.get(key=key)
    assert outbox_message_deliver(message.pk) == OutboxMessage.Status.DELIVERED, message.last_error
    message.refresh_from_db()
    return message


def test_it_signs_in_the_admin_and_the_ehr_holds_the_final_then_amended_report(
    writeback_settings: Any,  # noqa: F811
    sekmet: Sekmet,  # noqa: F811
    analysed_ecg: Callable[..., AnalysisJob],
    clinician: Any,
    senior_clinician: Any,
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        job = analysed_ecg(score=2.5)
    deliver(f"analysis-job:{job.pk}")
    key = f"job-{job.writeback_uuid}"
    [report] = sekmet.search("DiagnosticReport", identifier=identifier(f"{key}-report"))
    [task] = sekmet.search("Task", identifier=identifier(f"{key}-review"))
    assert report["status"] == "preliminary" and task["status"] == "requested"

    review = Review.objects.get(job=job)
    act = f"/admin/review/review/{review.pk}/act/"
    clinician.client.post(act + "claim/")
    clinician.client.post(act + "accept/")
    clinician.client.post(act + "labels/", {"scp_labels": ["ASMI", "SR"]})
    signed = senior_clinician.client.post(
        act + "sign/", {"report_text": "Sinus rhythm. Old anteroseptal MI.", "password": "pw-senior"}
    )
    assert signed.status_code == 302
    first = OutboxMessage.objects.get(key__startswith=f"review-sign:{review.pk}:")
    deliver(first.key)

    [final] = sekmet.search("DiagnosticReport", identifier=identifier(f"{key}-report"))
    [done] = sekmet.search("Task", identifier=identifier(f"{key}-review"))
    assert final["id"] == report["id"] and done["id"] == task["id"]  # updated in place, not duplicated
    # Conditional references resolved by the EHR to its own Observations and report.
    assert sorted(r["reference"] for r in final["result"]) == sorted(r["reference"] for r in report["result"])
    assert done["focus"]["reference"] == f"DiagnosticReport/{report['id']}"
    assert final["status"] == "final" and final["conclusion"] == "Sinus rhythm. Old anteroseptal MI."
    # SNOMED CT first where a concept applies (sinus rhythm), the SCP code always beside it.
    assert [[c["code"] for c in cc["coding"]] for cc in final["conclusionCode"]] == [["ASMI"], ["426783006", "SR"]]
    assert final["performer"][0]["identifier"]["value"] == f"user-{senior_clinician.user.pk}"
    assert done["status"] == "completed" and done["output"][0]["valueString"] == "AI finding confirmed"

    senior_clinician.client.post(act + "report/", {"report_text": "Sinus rhythm. Anteroseptal MI, age undetermined."})
    senior_clinician.client.post(act + "sign/", {"password": "pw-senior"})
    second = OutboxMessage.objects.exclude(pk=first.pk).get(key__startswith=f"review-sign:{review.pk}:")
    deliver(second.key)
    [amended] = sekmet.search("DiagnosticReport", identifier=identifier(f"{key}-report"))
    assert amended["id"] == report["id"] and amended["status"] == "amended"
    assert amended["conclusion"] == "Sinus rhythm. Anteroseptal MI, age undetermined."
