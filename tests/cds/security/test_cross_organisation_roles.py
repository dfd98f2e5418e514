"""Who sees every organisation in the review pages (issue 13), and that it is on the record.

Decision (docs/security.md §1a): quality auditors (the ``review.view_quality`` permission, granted
only by the "quality auditor" role) and superusers see every organisation's ECGs: auditing quality
across hospitals is the role. It is explicit (one permission, one role) and audited: each review page
they open is an ``accessed`` audit entry exported as a FHIR AuditEvent naming them.
"""

from __future__ import annotations

from typing import Any

import pytest
from auditlog.models import LogEntry

from cds.analysis.models import AnalysisJob
from cds.pipeline.analysis import analysis_results_store
from cds.review.audit import audit_event
from cds.review.models import Review
from cds.review.selectors import user_sees_all_sources
from tests.cds.factories import make_result
from tests.cds.security.test_tenancy import other_org  # noqa: F401 - fixture
from tests.conftest import Persona, _persona

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other_org: Any, ecg_factory: Any) -> Review:  # noqa: F811 - the imported fixture
    """Org-b's analysed ECG (no care team of org-a covers it)."""
    response = other_org.post("/fhir/Observation", ecg_factory(9, identifier="ecg-org-b"))
    assert response.status_code == 201, response.content
    job = AnalysisJob.objects.select_related("recording").get(recording__logical_id=response.json()["id"])
    analysis_results_store(job=job, result=make_result(score=2.5))
    return Review.objects.get()


def test_only_the_quality_auditor_role_grants_every_organisation(auditor: Persona, clinician: Persona) -> None:
    assert user_sees_all_sources(auditor.user)
    assert not user_sees_all_sources(clinician.user)
    assert not user_sees_all_sources(_persona("senior-x", "senior clinician").user)


def test_an_auditor_opens_another_organisations_review_and_it_is_audited(
    auditor: Persona, clinician: Persona, theirs: Review
) -> None:
    assert clinician.client.get(f"/admin/review/review/{theirs.pk}/change/").status_code == 403
    assert LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count() == 0
    assert f"Review {theirs.pk}" in auditor.client.get("/admin/review/review/").content.decode()
    assert auditor.client.get(f"/admin/review/review/{theirs.pk}/change/").status_code == 200
    (entry,) = LogEntry.objects.filter(action=LogEntry.Action.ACCESS, object_pk=str(theirs.pk))
    assert entry.actor == auditor.user
    event = audit_event(entry)
    assert event["action"] == "R"
    assert event["agent"][0]["who"]["identifier"]["value"] == "auditor"
