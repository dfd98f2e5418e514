"""Per-site recalibration (issue 19 item 2): fit on signed verdicts, auditor approval, served probability.

Signed verdicts are generated straight into the real PostgreSQL (``quality_factories``); served ECGs
go through the analysis pipeline's store (``analysis_results_store``), and one through a whole
in-process analysis job, as ``tests/cds/analysis`` run them.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError

from cds.analysis.models import AnalysisJob, Prediction
from cds.review.audit import audit_event
from cds.review.models import SiteRecalibration
from cds.review.quality import quality_report
from cds.review.recalibration import MIN_SIGNED
from cds.review.recalibration_fit import FitRefused, Platt, fit_with_cv, platt_fit
from inference.clinical.types import ClinicalReport
from inference.results import INTERPRETATION_NAME
from tests.cds.factories import flagged_clinical, normal_clinical
from tests.cds.review.quality_factories import served_ecg
from tests.conftest import CARE_TEAM_SOURCE, ORGANIZATION, OTHER_SOURCE, Persona

COMBINER = "verdict-lr-test"
SITE = f"{ORGANIZATION}/{CARE_TEAM_SOURCE}"  # where analysed_ecg's ECGs come from by default
OFFSET = 1.5  # logit units the generated site's stated probability is too high by


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def miscalibrated_site(n: int, *, site: str = SITE, seed: int = 7, combiner: str = COMBINER) -> None:
    """Store ``n`` signed ECGs whose stated probability is systematically too high (logit + OFFSET)."""
    org, source = site.split("/")
    rng = np.random.default_rng(seed)
    for _ in range(n):
        true_p = float(rng.uniform(0.02, 0.9))
        abnormal = bool(rng.random() < true_p)
        stated = float(sigmoid(np.log(true_p / (1 - true_p)) + OFFSET))
        flagged = stated >= 0.5
        verdict = "accept" if flagged == abnormal else "reject"
        prediction = served_ecg(org=org, source=source, score=stated, flagged=flagged, verdict=verdict)
        combined = {"probability": stated, "threshold": 0.5, "combiner_version": combiner}
        Prediction.objects.filter(pk=prediction.pk).update(report_details={"combined": combined})


def fit(site: str = SITE, *extra: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("fit_site_recalibration", "--site", site, "--json", *extra, stdout=out)
    return dict(json.loads(out.getvalue()))


def with_combined(clinical: ClinicalReport, probability: float, *, combiner: str = COMBINER) -> ClinicalReport:
    combined = {
        "probability": probability,
        "threshold": 0.3,
        "contributions": {"detector_z": 0.5},
        "combiner_version": combiner,
        "sources": ["detector_z"],
    }
    verdict = "Abnormal ECG" if clinical.flagged else "Otherwise normal ECG"
    text = f"{clinical.text} {verdict}: combined evidence {probability:.2f} (operating point 0.30)."
    return dataclasses.replace(clinical, combined=combined, text=text)


def interpretation(job: AnalysisJob) -> Prediction:
    return Prediction.objects.get(job=job, model_name=INTERPRETATION_NAME)


# --- the fit itself (pure) ---


def test_platt_fit_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(3)
    true_p = rng.uniform(0.02, 0.98, 20000)
    truth = rng.random(20000) < true_p
    stated = sigmoid(np.log(true_p / (1 - true_p)) + OFFSET)
    model = platt_fit(stated, truth)
    assert model.slope == pytest.approx(1.0, abs=0.05) and model.intercept == pytest.approx(-OFFSET, abs=0.08)


def test_the_fit_refuses_too_few_verdicts_or_too_few_of_a_class() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(FitRefused, match="49 signed verdicts, fewer than the 50"):
        fit_with_cv(rng.random(49), rng.random(49) < 0.5, min_n=50, min_per_class=10)
    truth = np.zeros(100, dtype=bool)
    truth[:9] = True
    with pytest.raises(FitRefused, match="9 abnormal and 91 normal"):
        fit_with_cv(rng.random(100), truth, min_n=50, min_per_class=10)


def test_the_mapping_is_increasing_so_the_operating_point_keeps_every_flag() -> None:
    model = Platt(slope=0.8, intercept=-1.2)
    raw = np.linspace(0.001, 0.999, 999)
    threshold = 0.2
    assert np.all(np.diff(model.apply(raw)) > 0)
    assert np.array_equal(model.apply(raw) >= model.apply(threshold), raw >= threshold)


# --- fitting on the real database ---


@pytest.mark.django_db
def test_fitting_is_refused_with_too_few_signed_verdicts() -> None:
    miscalibrated_site(MIN_SIGNED - 1)
    with pytest.raises(CommandError, match=f"{MIN_SIGNED - 1} signed verdicts, fewer than the {MIN_SIGNED}"):
        fit()
    assert not SiteRecalibration.objects.exists()


@pytest.mark.django_db
def test_a_miscalibrated_site_gets_a_draft_with_a_lower_cross_validated_ece() -> None:
    miscalibrated_site(300)
    miscalibrated_site(60, site=f"{ORGANIZATION}/{OTHER_SOURCE}", seed=8)  # another site: not fitted on
    figures = fit()
    assert figures["site"] == SITE and figures["status"] == "draft" and figures["version"] == 1
    assert figures["n"] == 300 and figures["combiner_version"] == COMBINER
    assert figures["ece_before"] > 0.1  # the generated offset is visible
    assert figures["ece_after_cv"] < figures["ece_before"] / 2
    assert figures["parameters"]["intercept"] < -0.5  # pulls the probability down
    assert fit()["version"] == 2  # a new fit is a new version; the first is unchanged
    first = SiteRecalibration.objects.get(site=SITE, version=1)
    assert first.parameters == figures["parameters"]
    first.ece_after = 0.0
    with pytest.raises(ValueError, match="immutable"):
        first.save()


# --- approval ---


@pytest.mark.django_db
def test_only_quality_auditors_approve_and_approving_retires_the_previous(
    auditor: Persona, senior_clinician: Persona
) -> None:
    miscalibrated_site(120)
    first, second = fit()["id"], fit()["id"]
    with pytest.raises(CommandError, match="quality auditors only"):
        call_command("approve_site_recalibration", str(first), "--by", senior_clinician.user.username)
    assert SiteRecalibration.objects.get(pk=first).status == "draft"
    call_command("approve_site_recalibration", str(first), "--by", auditor.user.username, stdout=io.StringIO())
    call_command("approve_site_recalibration", str(second), "--by", auditor.user.username, stdout=io.StringIO())
    statuses = dict(SiteRecalibration.objects.values_list("pk", "status"))
    assert statuses == {first: "retired", second: "approved"}
    with pytest.raises(CommandError, match="only a draft can be approved"):
        call_command("approve_site_recalibration", str(first), "--by", auditor.user.username)
    # Audited: the approval and the retirement, with the auditor as actor, exported as AuditEvents.
    kind = ContentType.objects.get_for_model(SiteRecalibration)
    changes = LogEntry.objects.filter(content_type=kind, action=LogEntry.Action.UPDATE).order_by("pk")
    assert [(e.object_pk, e.actor) for e in changes] == [
        (str(first), auditor.user),
        (str(first), auditor.user),
        (str(second), auditor.user),
    ]
    event = audit_event(changes.last())  # type: ignore[arg-type]
    assert event["agent"][0]["who"]["identifier"]["value"] == auditor.user.username
    assert "approved" in event["entity"][0]["detail"][0]["valueString"]


@pytest.mark.django_db
def test_the_admin_action_approves_for_auditors_only(auditor: Persona, senior_clinician: Persona) -> None:
    miscalibrated_site(120)
    draft = fit()["id"]
    url = "/admin/review/siterecalibration/"
    form = {"action": "approve", "_selected_action": [draft]}
    assert senior_clinician.client.post(url, form).status_code == 403
    assert SiteRecalibration.objects.get(pk=draft).status == "draft"
    assert auditor.client.post(url, form).status_code == 302
    approved = SiteRecalibration.objects.get(pk=draft)
    assert approved.status == "approved" and approved.approved_by == auditor.user and approved.approved_at
    assert LogEntry.objects.filter(object_pk=str(draft), actor=auditor.user).exists()


# --- served ---


@pytest.mark.django_db
def test_a_draft_is_not_served_an_approved_one_is_and_only_at_its_site(
    analysed_ecg: Callable[..., AnalysisJob], auditor: Persona
) -> None:
    miscalibrated_site(150)
    draft = fit()
    before = interpretation(analysed_ecg(ecg_id=63, clinical=with_combined(flagged_clinical(), 0.62)))
    assert before.score == pytest.approx(0.62) and "recalibration" not in before.input_provenance

    call_command("approve_site_recalibration", str(draft["id"]), "--by", auditor.user.username, stdout=io.StringIO())
    model = Platt.from_json(draft["parameters"])
    job = analysed_ecg(ecg_id=57, clinical=with_combined(flagged_clinical(), 0.62), effective="2024-03-02T10:00:00Z")
    served = interpretation(job)
    assert served.score == pytest.approx(float(model.apply(0.62))) and served.score < 0.62
    assert served.threshold == pytest.approx(float(model.apply(0.3)))
    combined = served.report_details["combined"]
    assert combined["raw_probability"] == pytest.approx(0.62) and combined["raw_threshold"] == pytest.approx(0.3)
    assert served.input_provenance["recalibration"]["id"] == draft["id"]
    # The draft report quotes the restated figures, not the raw ones.
    assert f"combined evidence {served.score:.2f} (operating point {served.threshold:.2f})" in served.report_text
    assert "combined evidence 0.62" not in served.report_text
    assert served.input_provenance["model_outputs"]["site-recalibration"] == f"{draft['id']}:v1"
    # The FHIR score Observation states the recalibrated probability; the Provenance names the artefact.
    provenance = job.result_resources.get(role="provenance").resource.content
    assert {"identifier": {"system": "urn:ecg-cds:site-recalibration", "value": str(draft["id"])}}.items() <= (
        provenance["entity"][-1]["what"].items()
    )
    score = job.result_resources.get(role="anomaly-score").resource.content
    assert score["valueQuantity"]["value"] == pytest.approx(served.score, abs=1e-3)

    elsewhere = interpretation(
        analysed_ecg(ecg_id=65, source=OTHER_SOURCE, clinical=with_combined(flagged_clinical(), 0.62))
    )
    assert elsewhere.score == pytest.approx(0.62) and "recalibration" not in elsewhere.input_provenance


@pytest.mark.django_db
def test_recalibration_never_changes_the_flag(analysed_ecg: Callable[..., AnalysisJob], auditor: Persona) -> None:
    miscalibrated_site(150)
    draft = fit()["id"]
    call_command("approve_site_recalibration", str(draft), "--by", auditor.user.username, stdout=io.StringIO())
    # Just above the operating point (0.3): recalibrated well below 0.3, but still flagged, and the
    # restated point moved with it; a normal ECG stays normal.
    flagged = interpretation(analysed_ecg(ecg_id=63, clinical=with_combined(flagged_clinical(), 0.31)))
    normal = interpretation(
        analysed_ecg(ecg_id=57, clinical=with_combined(normal_clinical(), 0.2), effective="2024-03-02T10:00:00Z")
    )
    assert flagged.flagged and flagged.score < 0.3 and flagged.score >= flagged.threshold
    assert not normal.flagged and normal.score < normal.threshold
    assert "recalibration" in flagged.input_provenance and "recalibration" in normal.input_provenance


@pytest.mark.django_db
def test_an_artefact_of_another_combiner_version_is_not_used(
    analysed_ecg: Callable[..., AnalysisJob], auditor: Persona
) -> None:
    miscalibrated_site(150, combiner="verdict-lr-old")
    draft = fit()["id"]
    call_command("approve_site_recalibration", str(draft), "--by", auditor.user.username, stdout=io.StringIO())
    served = interpretation(analysed_ecg(ecg_id=63, clinical=with_combined(flagged_clinical(), 0.62)))
    assert served.score == pytest.approx(0.62) and "recalibration" not in served.input_provenance


@pytest.mark.django_db
def test_the_quality_report_and_dashboard_show_approved_and_drafts(auditor: Persona) -> None:
    miscalibrated_site(120)
    approved, draft = fit()["id"], fit()["id"]
    call_command("approve_site_recalibration", str(approved), "--by", auditor.user.username, stdout=io.StringIO())
    summary = quality_report(resamples=20)["recalibration"][SITE]
    assert summary["approved"]["id"] == approved and summary["approved"]["approved_by"] == auditor.user.username
    assert [d["id"] for d in summary["drafts"]] == [draft]
    assert summary["approved"]["ece_after_cv"] < summary["approved"]["ece_before"]
    page = auditor.client.get("/admin/review/qualityprediction/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="site-recalibration"' in html and "draft, awaiting approval" in html and SITE in html


@pytest.mark.django_db
def test_an_in_process_analysis_job_serves_the_approved_recalibration(
    service_account: Any, ecg_factory: Any, auditor: Persona
) -> None:
    from cds.pipeline.tasks import analysis_job_run  # noqa: PLC0415 loads the in-process models only here
    from inference.clinical.combined import load_combiner  # noqa: PLC0415

    combiner = load_combiner()
    assert combiner is not None
    jobs = []
    for ecg_id in (9, 63):
        response = service_account.post("/fhir/Observation", ecg_factory(ecg_id))
        assert response.status_code == 201, response.content
        jobs.append(
            AnalysisJob.objects.select_related("recording__organization").get(
                recording__logical_id=response.json()["id"]
            )
        )
    recording = jobs[0].recording
    site = f"{recording.organization.slug}/{recording.received_from}"
    miscalibrated_site(150, site=site, combiner=combiner.version)
    draft = fit(site)
    call_command("approve_site_recalibration", str(draft["id"]), "--by", auditor.user.username, stdout=io.StringIO())
    # The second ECG comes from another source of the same organisation: no artefact there.
    jobs[1].recording.received_from = "another-ward"
    jobs[1].recording.save(update_fields=["received_from"])

    assert analysis_job_run(jobs[0].pk) == "succeeded" and analysis_job_run(jobs[1].pk) == "succeeded"
    served, elsewhere = interpretation(jobs[0]), interpretation(jobs[1])
    combined = served.report_details["combined"]
    assert combined is not None and combined["combiner_version"] == combiner.version
    model = Platt.from_json(draft["parameters"])
    assert served.score == pytest.approx(float(model.apply(combined["raw_probability"])))
    assert served.threshold == pytest.approx(float(model.apply(combined["raw_threshold"])))
    assert (served.score >= served.threshold) == (combined["raw_probability"] >= combined["raw_threshold"])
    assert served.input_provenance["recalibration"]["id"] == draft["id"]
    assert "recalibration" not in elsewhere.input_provenance
    assert "raw_probability" not in (elsewhere.report_details["combined"] or {})
