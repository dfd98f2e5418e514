"""Headless Chromium (Playwright, the system browser) through the review admin; saves README screenshots.

Needs the Debian ``chromium`` package (``.ci/run`` installs it); never ``playwright install``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from cds.analysis.models import AnalysisJob, Prediction
from cds.review.models import CardFeedback, IssuedCard, Review
from inference.clinical.interpret import interpret_ecg
from inference.clinical.types import ClinicalReport, EcgMeasurements
from inference.results import DETECTOR_NAME
from tests.cds.factories import make_result
from tests.conftest import LEADS_12, read_sample_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(CHROMIUM is None, reason="system Chromium not installed (apt-get install -y chromium)"),
]


def measured_interpretation(score: float, ecg_id: int = 63) -> tuple[ClinicalReport, EcgMeasurements]:
    """Return the real interpretation of a bundled sample beside the test's model results (screenshots show it)."""
    samples_uv, header = read_sample_record(ecg_id)
    result = make_result(score=score)
    interpretation = interpret_ecg(
        samples_uv / 1000.0,
        header["fs"],
        LEADS_12,
        age_years=56.0,
        sex="female",
        detector=result.detector,
        foundation=result.foundation,
    )
    return interpretation.clinical, interpretation.measurements


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous (Playwright's documented workaround for Django).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


def login(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/review/review/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def test_it_reviews_corrects_and_signs_in_a_browser(
    transactional_db: None, live_server: Any, browser: Any, analysed_ecg: Callable[..., AnalysisJob],
    senior_clinician: Any, admin_user: Any,
) -> None:  # fmt: skip
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    jobs = []
    for n, score in enumerate((2.5, 1.4, 3.1)):
        clinical, measurements = measured_interpretation(score)
        effective = f"2024-03-0{n + 1}T10:00:00Z"
        jobs.append(analysed_ecg(score=score, effective=effective, clinical=clinical, measurements=measurements))
    review = Review.objects.get(job=jobs[2])  # the newest ECG: the page lists the two earlier ones
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    base = live_server.url

    login(page, base, "senior", "pw-senior")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "worklist.png"), full_page=True)

    page.click(f"text=Review {review.pk}")
    page.wait_for_selector("#review-page svg")
    assert page.locator("text=not in a worklist").count() == 0 and page.locator("text=(pending)").count() == 2
    page.click("#claim")
    page.wait_for_selector("#accept")
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)
    page.click("#accept")
    page.wait_for_selector("#review-status:has-text('accepted')")

    page.fill("input[name=start_0]", "900")
    page.fill("input[name=end_0]", "1650")
    page.click("#save-intervals")
    page.wait_for_selector("text=intervals: done")
    assert page.input_value("input[name=start_0]") == "900.0"

    page.fill("#report-text", "Sinus rhythm. Anteroseptal Q waves, old infarction. Clinician-reviewed.")
    page.fill("#sign-password", "pw-senior")  # a signature asks for the password again
    page.click("#sign")
    page.wait_for_selector("#review-status:has-text('signed')")
    page.screenshot(path=str(SCREENSHOTS / "signed.png"), full_page=True)
    signed = Review.objects.select_related("current").get(pk=review.pk)
    assert signed.status == "signed" and signed.current is not None
    assert signed.current.report_text.startswith("Sinus rhythm. Anteroseptal")
    assert signed.revisions.filter(kind="intervals", intervals__0__start_ms=900.0).exists()

    # Issue 15: a clinician overrode one card in the EHR (the endpoint is tested in tests/cds/hooks/test_feedback.py).
    detector = Prediction.objects.get(job=jobs[0], model_name=DETECTOR_NAME)
    card = IssuedCard.objects.create(
        uuid=uuid.uuid4(), prediction=detector, organization=detector.recording.organization
    )
    CardFeedback.objects.create(
        card=card, organization=card.organization, client_id="ehr", outcome="overridden", reason_code="poor-quality",
        reason_display="Artefact / poor signal quality", comment="noisy V2", outcome_at=timezone.now(),
    )  # fmt: skip

    admin_page = browser.new_page(viewport={"width": 1300, "height": 900})
    admin_page.goto(f"{base}/admin/login/?next=/admin/review/qualityprediction/dashboard/")
    admin_page.fill("#id_username", "admin")
    admin_page.fill("#id_password", "password")
    admin_page.click("input[type=submit]")
    admin_page.wait_for_selector("#quality-metrics")
    admin_page.wait_for_selector("#served-quality")  # issue 19: the served verdict by subgroup
    assert admin_page.get_attribute("#quality-report-csv", "href").startswith("../quality-report.csv")
    feedback = admin_page.locator("#card-feedback").inner_text()
    assert "Artefact / poor signal quality: 1" in feedback and "noisy V2" in feedback
    # Issue 19: the per-site recalibration table (none fitted here: it says how to fit one).
    assert "fit_site_recalibration --site" in admin_page.locator("#site-recalibration").inner_text()
    admin_page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
