"""Issue 19: the quality report of the served verdict (subgroups, bootstrap intervals, calibration, CSV)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from cds.analysis.models import Prediction
from cds.review.quality import age_band
from cds.review.quality_stats import _bootstrap_chunk, _statistics, auroc, psi, reliability
from tests.cds.review.quality_factories import served_ecg, served_population

pytestmark = pytest.mark.django_db


def _report(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("quality_report", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_figures_by_hand_on_four_signed_verdicts_and_one_unsigned() -> None:
    # TP (flag confirmed), FP (flag rejected), TN (normal confirmed), FN (normal rejected), unsigned flag.
    served_ecg(score=0.9, flagged=True, verdict="accept", sex="male", age=70)
    served_ecg(score=0.6, flagged=True, verdict="reject", sex="female", age=30, source="ward-b")
    served_ecg(score=0.2, flagged=False, verdict="accept", sex="female", age=50, rate=250.0)
    served_ecg(score=0.4, flagged=False, verdict="reject", sex="male", age=85, org="general")
    served_ecg(score=0.8, flagged=True)

    report = _report()

    assert set(report) >= {"overall", "by_age_band", "by_sex", "by_site", "by_sampling_rate", "drift", "calibration"}
    overall = report["overall"]["interp-1"]
    assert (overall["n"], overall["n_flagged"], overall["n_signed"], overall["n_signed_abnormal"]) == (5, 3, 4, 2)
    assert overall["flag_rate"] == pytest.approx(3 / 5)
    assert overall["sensitivity"]["value"] == pytest.approx(1 / 2)  # TP / (TP + FN)
    assert overall["specificity"]["value"] == pytest.approx(1 / 2)  # TN / (TN + FP)
    assert overall["ppv"]["value"] == pytest.approx(1 / 2)
    # Abnormal scores 0.9, 0.4; normal 0.6, 0.2: pairs won 0.9>0.6, 0.9>0.2, 0.4>0.2 of 4.
    assert overall["auroc"]["value"] == pytest.approx(3 / 4)
    assert set(report["by_site"]["interp-1"]) == {"st-marys/ward-a", "st-marys/ward-b", "general/ward-a"}
    assert report["by_site"]["interp-1"]["st-marys/ward-a"]["n"] == 3
    assert set(report["by_sex"]["interp-1"]) == {"female", "male"}
    assert set(report["by_age_band"]["interp-1"]) == {"18-39", "40-64", "65-79", "80+"}
    assert report["by_sampling_rate"]["interp-1"]["250 Hz"]["n"] == 1
    assert set(report["calibration"]["interp-1"]) == {"st-marys/ward-a", "st-marys/ward-b", "general/ward-a"}


def test_fallback_verdicts_without_a_probability_get_no_auroc_and_no_calibration() -> None:
    """A version served by the fallback rule (no fitted combiner) has calls but no probability."""
    served_ecg(score=None, flagged=True, verdict="accept", version="cand-2")
    served_ecg(score=None, flagged=False, verdict="accept", version="cand-2")
    served_ecg(score=0.9, flagged=True, verdict="accept", version="cand-2")

    report = _report()

    figures = report["overall"]["cand-2"]
    assert figures["auroc"] == {"value": None, "ci_low": None, "ci_high": None}
    assert figures["auroc_unavailable"] == "2 signed verdicts have no combined probability (fallback verdict)"
    assert figures["sensitivity"]["value"] == pytest.approx(1.0) and figures["specificity"]["value"] == pytest.approx(
        1.0
    )
    assert report["calibration"]["cand-2"]["st-marys/ward-a"]["n"] == 1  # only the one with a probability


def test_bootstrap_intervals_hold_the_value_and_narrow_with_more_signed_verdicts() -> None:
    rng = np.random.default_rng(1)
    served_population(rng, 30, version="small")
    served_population(rng, 240, version="large")

    report = _report("--resamples", "300")

    widths = {}
    for version in ("small", "large"):
        for figure in ("auroc", "sensitivity", "specificity", "ppv"):
            f = report["overall"][version][figure]
            assert 0.0 <= f["ci_low"] <= f["value"] <= f["ci_high"] <= 1.0, (version, figure, f)
        widths[version] = report["overall"][version]["auroc"]["ci_high"] - report["overall"][version]["auroc"]["ci_low"]
    assert widths["large"] < widths["small"]
    only_small = _report("--model-version", "small", "--resamples", "50")
    assert only_small["model_versions"] == ["small"] and list(only_small["overall"]) == ["small"]


def test_since_leaves_out_older_verdicts_and_a_bad_date_is_refused() -> None:
    old = served_ecg(score=0.9, flagged=True, verdict="accept")
    served_ecg(score=0.1, flagged=False, verdict="accept")
    Prediction.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    since = (timezone.now() - timedelta(days=7)).date().isoformat()

    assert _report("--since", since)["overall"]["interp-1"]["n"] == 1
    with pytest.raises(CommandError, match="--since 'last week' is not an ISO date"):
        call_command("quality_report", "--since", "last week")


def test_calibration_per_site_separates_a_calibrated_site_from_an_overconfident_one() -> None:
    for i in range(10):
        served_ecg(source="calibrated", score=0.85, flagged=True, verdict="accept" if i < 8 else "reject")
        served_ecg(source="overconfident", score=0.85, flagged=True, verdict="accept" if i < 2 else "reject")

    calibration = _report("--resamples", "20")["calibration"]["interp-1"]

    good, bad = calibration["st-marys/calibrated"], calibration["st-marys/overconfident"]
    assert good["ece"] == pytest.approx(0.05)
    assert bad["ece"] == pytest.approx(0.65)
    assert bad["bins"] == [{"bin": "0.8-0.9", "n": 10, "mean_predicted": pytest.approx(0.85), "observed": 0.2}]


def test_csv_has_one_row_per_version_and_group() -> None:
    served_ecg(score=0.9, flagged=True, verdict="accept")
    served_ecg(score=0.1, flagged=False, verdict="accept", sex="male")

    out = io.StringIO()
    call_command("quality_report", "--resamples", "20", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))

    groups = {(r["grouping"], r["group"]) for r in rows}
    assert ("overall", "all") in groups and ("sex", "male") in groups and ("site", "st-marys/ward-a") in groups
    overall = next(r for r in rows if r["grouping"] == "overall")
    assert (overall["n"], overall["n_signed"], overall["sensitivity"]) == ("2", "2", "1.0")


def test_dashboard_shows_the_served_verdict_by_subgroup_and_exports_it(auditor: Any, clinician: Any) -> None:
    served_ecg(score=0.9, flagged=True, verdict="accept", source="ward-z")
    served_ecg(score=0.1, flagged=False, verdict="accept", source="ward-z")

    page = auditor.client.get("/admin/review/qualityprediction/dashboard/")
    assert page.status_code == 200
    assert b'id="served-quality"' in page.content and b"st-marys/ward-z" in page.content
    # Once each, beside the recalibration and CDS feedback sections; no merge leftovers in the page.
    assert page.content.count(b'id="served-quality"') == 1 and page.content.count(b'id="quality-report-csv"') == 1
    assert b'id="site-recalibration"' in page.content and b'id="card-feedback"' in page.content
    assert b"<<<<<<<" not in page.content and b">>>>>>>" not in page.content
    export = auditor.client.get("/admin/review/qualityprediction/quality-report.csv")
    assert export.status_code == 200 and export["Content-Type"] == "text/csv"
    assert "st-marys/ward-z" in export.content.decode()
    assert clinician.client.get("/admin/review/qualityprediction/quality-report.csv").status_code == 403


def test_statistics_against_hand_values() -> None:
    assert auroc(np.array([0.1, 0.1]), np.array([True, False])) == 0.5  # a tie counts half
    assert auroc(np.array([0.3, 0.2]), np.array([True, True])) is None
    assert psi(["500 Hz"] * 20, ["500 Hz"] * 5) == pytest.approx(0.0)
    assert psi(["500 Hz"] * 20, ["250 Hz"] * 5) > 2.0
    assert reliability(np.array([]), np.array([], dtype=bool))["ece"] is None
    assert (age_band(None, None), age_band(17.0, 17.0), age_band(64.0, 66.0)) == ("unknown", "<18", "65-79")


def test_vectorized_bootstrap_equals_the_figures_of_each_resample_drawn_one_by_one() -> None:
    rng = np.random.default_rng(0)
    n = 57
    scores = np.round(rng.random(n), 1)  # rounded: many ties
    truth = rng.random(n) < 0.4
    called = scores >= 0.5
    for _ in range(50):
        index = rng.integers(0, n, n)
        weights = np.bincount(index, minlength=n).astype(np.float64)[None, :]
        vectorized = _bootstrap_chunk(weights, scores, called, truth)
        for name, value in _statistics(scores[index], called[index], truth[index]).items():
            got = vectorized[name][0]
            assert np.isnan(got) if value is None else got == pytest.approx(value, abs=1e-12), name
