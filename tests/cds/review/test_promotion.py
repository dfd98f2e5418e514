"""Issue 19: gated promotion against pre-registered criteria, on a candidate's shadow verdicts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from auditlog.models import LogEntry
from django.core.management import CommandError, call_command

from cds.analysis.models import Prediction
from cds.review.models import ModelCandidate, PromotionDecision, Review
from cds.review.quality import quality_report, shadow_model_name
from cds.review.selectors import interpretation_for
from tests.cds.review.quality_factories import served_population

pytestmark = pytest.mark.django_db
NAME = "ecg-interpretation"
SENSITIVITY_NOT_WORSE = [{"figure": "sensitivity", "bound": "ci_low", "compare": "serving"}]


def _shadow(version: str, call: Any) -> None:
    """Store candidate ``version``'s verdict beside every served one (same job), flagging per ``call(truth)``."""
    for served in Prediction.objects.filter(model_name=NAME, model_version="interp-1").select_related("job__review"):
        review = served.job.review
        abnormal = (review.queue == Review.Queue.FLAGGED) == (review.signed_revision.verdict == "accept")
        flagged = call(abnormal)
        Prediction.objects.create(
            job=served.job, recording_id=served.recording_id, model_name=shadow_model_name(NAME), model_version=version,
            score=0.9 if flagged else 0.1, threshold=0.5, flagged=flagged,
        )  # fmt: skip


def _register(tmp_path: Path, version: str, criteria: Any, min_signed: int = 50) -> None:
    path = tmp_path / f"{version}.json"
    path.write_text(json.dumps(criteria))
    call_command("register_model_candidate", version, "--criteria", str(path), "--min-signed", str(min_signed))


@pytest.fixture
def serving() -> None:
    served_population(np.random.default_rng(3), 80)


def test_a_candidate_meeting_its_criteria_is_promoted_and_audited(serving: None, tmp_path: Path) -> None:
    _shadow("interp-2", lambda abnormal: abnormal)  # calls every signed ECG right
    _register(tmp_path, "interp-2", SENSITIVITY_NOT_WORSE)

    out = io.StringIO()
    call_command("promote_model", NAME, "interp-2", "--by", "qa-lead", stdout=out)

    assert "promoted ecg-interpretation interp-2 (was interp-1)" in out.getvalue()
    assert ModelCandidate.objects.get(model_version="interp-2").status == ModelCandidate.Status.PROMOTED
    decision = PromotionDecision.objects.get()
    assert decision.promoted and decision.serving_version == "interp-1" and decision.decided_by == "qa-lead"
    check = decision.figures["checks"][0]
    assert check["candidate"] == 1.0 and check["passed"] and check["target"] < 1.0
    assert LogEntry.objects.get_for_model(PromotionDecision).count() == 1


def test_shadow_verdicts_are_reported_but_never_shown_as_the_verdict(serving: None) -> None:
    _shadow("interp-2", lambda abnormal: abnormal)

    report = quality_report(resamples=20)

    assert report["model_versions"] == ["interp-1", "interp-2 (shadow)"]
    assert report["overall"]["interp-2 (shadow)"]["sensitivity"]["value"] == 1.0
    assert report["overall"]["interp-2 (shadow)"]["n_signed"] == report["overall"]["interp-1"]["n_signed"] == 80
    for review in Review.objects.all()[:10]:  # the review page's verdict is still the served row
        shown = interpretation_for(review)
        assert shown is not None and shown.model_version == "interp-1"


def test_a_candidate_failing_its_criteria_is_refused_with_the_figures(serving: None, tmp_path: Path) -> None:
    _shadow("interp-3", lambda abnormal: False)  # never flags: sensitivity 0
    _register(
        tmp_path, "interp-3", [*SENSITIVITY_NOT_WORSE, {"figure": "specificity", "bound": "value", "compare": 0.5}]
    )

    with pytest.raises(CommandError, match=r"refused: sensitivity ci_low = 0\.000 below the target 0\.\d{3}"):
        call_command("promote_model", NAME, "interp-3", stdout=io.StringIO())

    decision = PromotionDecision.objects.get()
    assert not decision.promoted
    assert [c["passed"] for c in decision.figures["checks"]] == [False, True]  # specificity 1.0 >= 0.5
    assert ModelCandidate.objects.get(model_version="interp-3").status == ModelCandidate.Status.REGISTERED
    assert LogEntry.objects.get_for_model(PromotionDecision).count() == 1  # the refusal is audited too


def test_too_few_signed_verdicts_refuse_even_a_perfect_candidate(serving: None, tmp_path: Path) -> None:
    _shadow("interp-4", lambda abnormal: abnormal)
    _register(tmp_path, "interp-4", SENSITIVITY_NOT_WORSE, min_signed=500)

    with pytest.raises(CommandError, match="80 signed verdicts, fewer than the 500 required"):
        call_command("promote_model", NAME, "interp-4", stdout=io.StringIO())


def test_criteria_are_checked_at_registration_and_never_changed(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"criteria\[0\]\.figure must be one of auroc, sensitivity"):
        _register(tmp_path, "interp-5", [{"figure": "accuracy"}])
    with pytest.raises(CommandError, match=r"criteria\[0\]\.bound must be one of"):
        _register(tmp_path, "interp-5", [{"figure": "ppv", "bound": "median"}])
    assert not ModelCandidate.objects.exists()
    _register(tmp_path, "interp-5", SENSITIVITY_NOT_WORSE)
    with pytest.raises(CommandError, match="pre-registered criteria cannot be changed"):
        _register(tmp_path, "interp-5", [{"figure": "ppv", "compare": 0.1}])
    with pytest.raises(CommandError, match="interp-9 is not a registered candidate"):
        call_command("promote_model", NAME, "interp-9")


def test_auditors_see_candidates_and_decisions_read_only_and_clinicians_do_not(
    serving: None, tmp_path: Path, auditor: Any, senior_clinician: Any
) -> None:
    _shadow("interp-2", lambda abnormal: not abnormal)  # calls every signed ECG wrong: refused
    _register(tmp_path, "interp-2", SENSITIVITY_NOT_WORSE)
    with pytest.raises(CommandError):
        call_command("promote_model", NAME, "interp-2", "--by", "qa-lead", stdout=io.StringIO())
    candidate = ModelCandidate.objects.get(model_version="interp-2")
    decision = PromotionDecision.objects.get()

    listing = auditor.client.get("/admin/review/modelcandidate/")
    assert listing.status_code == 200 and b"interp-2" in listing.content
    decisions = auditor.client.get("/admin/review/promotiondecision/")
    assert decisions.status_code == 200 and b"interp-2" in decisions.content
    assert auditor.client.get(f"/admin/review/promotiondecision/{decision.pk}/change/").status_code == 200
    # Read-only: registration and promotion are the commands' (they check the criteria).
    assert auditor.client.get("/admin/review/modelcandidate/add/").status_code == 403
    edit = {"status": "promoted"}
    assert auditor.client.post(f"/admin/review/modelcandidate/{candidate.pk}/change/", edit).status_code == 403
    assert ModelCandidate.objects.get(pk=candidate.pk).status == candidate.status
    assert senior_clinician.client.get("/admin/review/modelcandidate/").status_code == 403
    assert senior_clinician.client.get("/admin/review/promotiondecision/").status_code == 403
