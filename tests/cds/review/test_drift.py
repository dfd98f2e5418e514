"""Issue 19: drift alarms per site, tested by replaying real ECGs through the FHIR API, day by day.

Three feeds of one organisation send the committed PTB-XL samples for six replayed days. On day 6
one feed starts sending millivolt numbers where microvolts are expected (the unit error that gets
past ingest's ±20 mV bound: the reverse, µV numbers labelled mV, is refused there with a 422) and
another resamples to 250 Hz; the third stays stable. The replay sets each ECG's reception time
(``created_at``) to its replayed day, the one seam this test owns.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.test import Client
from scipy.signal import resample_poly

from cds.analysis.models import Prediction
from cds.ecg.encoding import ecg_observation
from cds.ecg.models import EcgRecording
from cds.review.drift import check_drift
from cds.review.models import DriftAlarm
from cds.review.quality import quality_report
from tests.cds.core.test_metrics import scrape
from tests.cds.review.quality_factories import served_ecg
from tests.conftest import LEADS_12, ORGANIZATION, read_sample_record

pytestmark = pytest.mark.django_db

RECORDS = (9, 38, 57, 63, 65, 116, 128, 131)
FIRST_DAY = date(2026, 3, 2)
PER_DAY = 4
STABLE, UNITS, RESAMPLED = "ward-stable", "ward-units", "ward-250hz"


@pytest.fixture(scope="module")
def waveforms() -> dict[int, np.ndarray]:
    return {ecg_id: read_sample_record(ecg_id)[0] for ecg_id in RECORDS}


def _observation(samples: np.ndarray, *, rate: float, identifier: str, resolution: float = 1.0) -> dict[str, Any]:
    return ecg_observation(
        samples, sample_rate_hz=rate, leads=LEADS_12, identifier=("urn:oid:1.2.3.4.ecg", identifier),
        effective="2026-03-01T10:00:00Z", resolution_uv=resolution,
    )  # fmt: skip


def _replay_day(service_account: Any, waveforms: dict[int, np.ndarray], day_index: int, *, faulty: bool) -> None:
    """Send one day of every feed; on a ``faulty`` day the unit and 250 Hz feeds carry their fault."""
    day = FIRST_DAY + timedelta(days=day_index)
    for source in (STABLE, UNITS, RESAMPLED):
        for i in range(PER_DAY):
            samples = waveforms[RECORDS[(day_index * PER_DAY + i) % len(RECORDS)]]
            identifier = f"{source}-{day_index}-{i}"
            if faulty and source == UNITS:  # millivolt numbers, kept to 1 µV resolution
                observation = _observation(samples / 1000.0, rate=500, identifier=identifier, resolution=0.001)
            elif faulty and source == RESAMPLED:
                resampled = resample_poly(samples, 1, 2, axis=1).astype(np.float32)
                observation = _observation(resampled, rate=250, identifier=identifier)
            else:
                observation = _observation(samples, rate=500, identifier=identifier)
            response = service_account.post("/fhir/Observation", observation)
            assert response.status_code == 201, response.content[:300]
            EcgRecording.objects.filter(logical_id=response.json()["id"]).update(
                received_from=source,
                created_at=datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9 + i),
            )


def test_replay_catches_unit_error_and_resampling_on_their_first_day_and_stays_quiet_when_stable(
    service_account: Any, waveforms: dict[int, np.ndarray], auditor: Any, clinician: Any
) -> None:
    for day_index in range(5):  # five stable days: the reference window builds up, nothing fires
        _replay_day(service_account, waveforms, day_index, faulty=False)
        assert check_drift(day=FIRST_DAY + timedelta(days=day_index)) == []

    _replay_day(service_account, waveforms, 5, faulty=True)
    out = io.StringIO()
    call_command("check_drift", "--day", (FIRST_DAY + timedelta(days=5)).isoformat(), stdout=out)

    fired = {(a.site, a.feature) for a in DriftAlarm.objects.all()}
    assert fired == {
        (f"{ORGANIZATION}/{UNITS}", "amplitude_range_uv"),
        (f"{ORGANIZATION}/{RESAMPLED}", "sampling_rate"),
    }, out.getvalue()
    assert "3 new drift alarm(s)" not in out.getvalue() and "2 new drift alarm(s)" in out.getvalue()
    units = DriftAlarm.objects.get(feature="amplitude_range_uv")
    assert units.test == "ks" and units.statistic == 1.0 and units.p_value < 1e-3
    assert units.details["day"]["median"] < units.details["reference"]["median"] / 500  # a factor 1000
    rate = DriftAlarm.objects.get(feature="sampling_rate")
    assert rate.details == {"reference": {"500 Hz": 20}, "day": {"250 Hz": 4}}

    # A rerun raises nothing twice; every alarm is audited, shown and counted.
    assert check_drift(day=FIRST_DAY + timedelta(days=5)) == []
    assert LogEntry.objects.get_for_model(DriftAlarm).filter(action=LogEntry.Action.CREATE).count() == 2
    banner = auditor.client.get("/admin/").content.decode()
    assert 'id="drift-banner"' in banner and f"{ORGANIZATION}/{UNITS}" in banner
    assert 'id="drift-banner"' in auditor.client.get("/admin/review/qualityprediction/dashboard/").content.decode()
    samples = scrape(Client())
    assert samples[("cds_quality_drift_alarms_open", (("feature", "amplitude_range_uv"),))] == 1
    assert samples[("cds_quality_drift_alarms_open", (("feature", "lead_set"),))] == 0
    drift = quality_report(resamples=10)["drift"]
    assert set(drift) == {f"{ORGANIZATION}/{UNITS}", f"{ORGANIZATION}/{RESAMPLED}"}

    # Acted on: a quality auditor acknowledges (audited), the banner and the gauge clear.
    changelist = "/admin/review/driftalarm/"
    assert (
        clinician.client.post(changelist, {"action": "acknowledge", "_selected_action": [units.pk]}).status_code == 403
    )
    pks = [str(pk) for pk in DriftAlarm.objects.values_list("pk", flat=True)]
    response = auditor.client.post(changelist, {"action": "acknowledge", "_selected_action": pks})
    assert response.status_code == 302
    assert DriftAlarm.objects.filter(acknowledged_by=auditor.user).count() == 2
    assert LogEntry.objects.get_for_model(DriftAlarm).filter(action=LogEntry.Action.UPDATE).count() == 2
    assert 'id="drift-banner"' not in auditor.client.get("/admin/").content.decode()
    assert scrape(Client())[("cds_quality_drift_alarms_open", (("feature", "amplitude_range_uv"),))] == 0


def test_score_drift_fires_on_a_shifted_score_distribution_only(make_day: Callable[..., None]) -> None:
    rng = np.random.default_rng(7)
    for day_index in range(5):
        make_day(day_index, "steady", rng.uniform(0.1, 0.6, 6))
        make_day(day_index, "shifting", rng.uniform(0.1, 0.6, 6))
    make_day(5, "steady", rng.uniform(0.1, 0.6, 6))
    make_day(5, "shifting", rng.uniform(0.8, 0.99, 6))  # e.g. a new cart's filter inflating the scores

    alarms = check_drift(day=FIRST_DAY + timedelta(days=5))

    assert [(a.site, a.feature) for a in alarms] == [("st-marys/shifting", "score")]


def test_an_approved_recalibration_is_not_score_drift(make_day: Callable[..., None]) -> None:
    """A site's recalibration restates the stored score on purpose; drift reads the models' raw probability."""
    rng = np.random.default_rng(11)
    for day_index in range(6):
        make_day(day_index, "recalibrated", rng.uniform(0.1, 0.6, 6))
    day_five = datetime.combine(FIRST_DAY + timedelta(days=5), datetime.min.time(), tzinfo=UTC)
    for prediction in Prediction.objects.filter(recording__created_at__gte=day_five):
        raw = prediction.score
        # As recalibrated_result stores it: the stated probability moved, the raw one kept beside it.
        prediction.report_details = {"combined": {"probability": 0.95, "raw_probability": raw}}
        prediction.score = 0.95
        prediction.save(update_fields=["report_details", "score"])

    assert check_drift(day=FIRST_DAY + timedelta(days=5)) == []


@pytest.fixture
def make_day() -> Callable[..., None]:
    def build(day_index: int, source: str, scores: np.ndarray) -> None:
        day = datetime.combine(FIRST_DAY + timedelta(days=day_index), datetime.min.time(), tzinfo=UTC)
        samples = np.random.default_rng(0).normal(0, 300, (12, 50)).astype(np.float32)
        for score in scores:
            prediction = served_ecg(source=source, score=float(score), flagged=score >= 0.5, samples=samples)
            EcgRecording.objects.filter(pk=prediction.recording_id).update(created_at=day + timedelta(hours=10))

    return build


def test_too_few_ecgs_on_a_day_raise_nothing(make_day: Callable[..., None]) -> None:
    for day_index in range(5):
        make_day(day_index, "quiet", np.full(3, 0.2))
    make_day(5, "quiet", np.full(2, 0.95))  # two ECGs: below MIN_DAY, not evidence of drift

    assert check_drift(day=FIRST_DAY + timedelta(days=5)) == []


def test_the_daily_beat_task_checks_the_given_day(make_day: Callable[..., None]) -> None:
    from django.conf import settings

    from cds.review.tasks import quality_check_drift

    for day_index in range(5):
        make_day(day_index, "steady", np.linspace(0.1, 0.6, 6))
    make_day(5, "steady", np.full(6, 0.95))

    result = quality_check_drift.apply(kwargs={"day": (FIRST_DAY + timedelta(days=5)).isoformat()}).get()

    assert result == {"day": "2026-03-07", "alarms": ["st-marys/steady score"]}
    assert settings.CELERY_BEAT_SCHEDULE["quality-check-drift"]["task"] == "quality.check_drift"
