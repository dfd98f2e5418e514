"""Issue 19: a candidate in shadow runs on every analysed ECG on a real Triton serving two detector versions.

The module's Triton serves a temporary repository: the shipped models, plus ``ecg_detector``
version 2, a copy of version 1 whose serving facts carry their own label. Jobs run through the
served path (claim, analyse, store) and the shadow task, called directly (docs/style.md G5); the
last test runs both through a real worker and broker (gunicorn + Celery, tests/livestack.py).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY

from cds.analysis.analyzer import analyzer
from cds.analysis.models import AnalysisJob, Prediction, ResultResource
from cds.fhir.models import StoredResource
from cds.hooks.services import patient_view_cards
from cds.pipeline import shadow
from cds.pipeline.tasks import shadow_run
from cds.review.models import ModelCandidate, Review, ReviewRevision
from cds.review.promotion import promote, register_candidate
from cds.review.quality import quality_report
from cds.review.selectors import shadow_candidates
from cds.writeback.models import OutboxMessage
from inference.clinical.types import INTERPRETATION_VERSION
from inference.local_triton import LocalTriton
from inference.results import DETECTOR_NAME, INTERPRETATION_NAME
from tests.e2e.conftest import REPOSITORY, served_models
from tests.e2e.versions import add_copy_as_version_2
from tests.inference.conftest import require_triton_venv
from tests.livestack import LiveStack, wait_for_job

pytestmark = [pytest.mark.live, pytest.mark.django_db]
CANDIDATE = "interp-s2"
ANY_SENSITIVITY = [{"figure": "sensitivity", "bound": "value", "compare": 0.0}]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """Triton serving the shipped models with ``ecg_detector`` at versions 1 and 2 (CPU configs)."""
    require_triton_venv()
    root = tmp_path_factory.mktemp("shadow-triton")
    repository = root / "models"
    shutil.copytree(REPOSITORY, repository)
    add_copy_as_version_2(repository / "ecg_detector", "detector-copy-v2")
    server = LocalTriton(
        repository=repository,
        config_name="cpu",
        load_models=served_models(),
        work_dir=root / "work",
        log_path=root / "tritonserver.log",
    )
    server.start(timeout_s=180)
    yield server
    server.stop()


@pytest.fixture
def on_triton(two_versions: LocalTriton, settings: Any) -> Iterator[None]:
    """Point the served analyzer at the module's Triton, version 1 pinned as in production."""
    settings.INFERENCE_BACKEND = "triton"
    settings.TRITON_URL = two_versions.grpc_url
    settings.TRITON_PROTOCOL = "grpc"
    settings.TRITON_HTTP_URL = ""
    settings.TRITON_MODEL_VERSIONS = {"ecg_detector": "1", "ecg_foundation": "1"}
    settings.INFERENCE_FOUNDATION_ENABLED = "ecg_foundation" in served_models()
    settings.WRITEBACK_ENABLED = True
    analyzer.cache_clear()
    yield
    analyzer.cache_clear()


@pytest.fixture
def patient(service_account: Any, patient_resource: dict[str, Any]) -> str:
    return str(service_account.post("/fhir/Patient", patient_resource).json()["id"])


@pytest.fixture
def analysed(
    on_triton: None, service_account: Any, ecg_factory: Any, patient: str, django_capture_on_commit_callbacks: Any
) -> Callable[[int], tuple[AnalysisJob, list[tuple[int, int]]]]:
    """Return: post ECG ``ecg_id`` for the patient, run its served job; give the job and the shadow runs enqueued."""
    from cds.pipeline.tasks import analysis_job_run

    def run(ecg_id: int) -> tuple[AnalysisJob, list[tuple[int, int]]]:
        observation = ecg_factory(ecg_id, patient_reference=f"Patient/{patient}")
        response = service_account.post("/fhir/Observation", observation)
        assert response.status_code == 201, response.content
        job = AnalysisJob.objects.get(recording__logical_id=response.json()["id"])
        # Commit callbacks captured, not run: the write-back delivery must not reach the shared broker.
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert analysis_job_run(job.pk) == "succeeded"
        runs = [
            tuple(cb.args)
            for cb in callbacks
            if isinstance(cb, functools.partial) and cb.func is shadow._enqueue  # noqa: SLF001 the callback itself
        ]
        job.refresh_from_db()
        return job, runs  # type: ignore[return-value]

    return run


def _written(job: AnalysisJob) -> dict[str, Any]:
    """Return what the served path wrote for ``job`` and its ECG: FHIR resources, review, outbox."""
    return {
        "results": sorted(ResultResource.objects.filter(job=job).values_list("pk", flat=True)),
        "fhir": StoredResource.objects.count(),
        "reviews": list(Review.objects.filter(job=job).values_list("pk", "prediction_id", "queue")),
        "outbox": list(OutboxMessage.objects.values_list("pk", "key", "bundle")),
    }


def _cards(job: AnalysisJob, patient: str) -> Any:
    return patient_view_cards(
        request={"context": {"patientId": patient}}, organization_id=job.recording.organization_id
    )["cards"]


def test_it_runs_the_candidate_after_the_served_job_and_writes_nothing_back(analysed: Any, patient: str) -> None:
    candidate = register_candidate(
        model_name=INTERPRETATION_NAME, model_version=CANDIDATE, criteria=ANY_SENSITIVITY, min_signed=1,
        detector_version="2",
    )  # fmt: skip
    assert candidate.status == ModelCandidate.Status.SHADOW

    job, runs = analysed(9)
    assert runs == [(job.pk, candidate.pk)]  # enqueued once the served results committed
    served = {p.model_name: p for p in Prediction.objects.filter(job=job)}
    assert served[DETECTOR_NAME].server_model_version == "ecg_detector/1"
    assert not any(name.startswith("shadow:") for name in served)
    before, cards = _written(job), _cards(job, patient)
    assert before["results"] and before["outbox"] and cards

    assert shadow_run(job.pk, candidate.pk) == "succeeded"

    rows = {p.model_name: p for p in Prediction.objects.filter(job=job, model_name__startswith="shadow:")}
    detector = rows[f"shadow:{DETECTOR_NAME}"]
    assert detector.model_version == "detector-copy-v2" and detector.server_model_version == "ecg_detector/2"
    assert served[DETECTOR_NAME].model_version != "detector-copy-v2"
    # Version 2 is version 1's artifact: the same score, read with version 2's serving facts.
    assert detector.score == pytest.approx(served[DETECTOR_NAME].score, abs=1e-3)
    verdict = rows[f"shadow:{INTERPRETATION_NAME}"]
    assert verdict.model_version == CANDIDATE
    assert verdict.input_provenance["model_outputs"][DETECTOR_NAME] == "detector-copy-v2"
    assert verdict.input_provenance["interpretation_version"] == INTERPRETATION_VERSION
    # The verdict combination is fitted for version 1's label: the candidate gets the documented
    # fallback verdict, with no combined probability (docs/quality.md, "Read with care").
    assert verdict.score is None and "verdict-combiner" not in verdict.input_provenance["model_outputs"]
    # Nothing the served path wrote has changed: FHIR results, review, outbox, CDS card.
    assert _written(job) == before
    assert _cards(job, patient) == cards
    job.refresh_from_db()
    entry = job.shadow[CANDIDATE]
    assert entry["status"] == "succeeded" and entry["attempts"] == 1 and entry["ms"] > 0
    assert job.status == AnalysisJob.Status.SUCCEEDED and job.error == ""
    # A second delivery of the same run stores nothing twice.
    assert shadow_run(job.pk, candidate.pk) == "skipped"
    assert Prediction.objects.filter(job=job, model_name__startswith="shadow:").count() == len(rows)


def test_a_version_triton_does_not_serve_fails_visibly_and_the_served_job_does_not(
    analysed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    candidate = register_candidate(
        model_name=INTERPRETATION_NAME, model_version="interp-s7", criteria=ANY_SENSITIVITY, min_signed=1,
        detector_version="7",
    )  # fmt: skip
    labels = {"outcome": "failed", "reason": "ModelVersionMismatch"}
    failed_before = REGISTRY.get_sample_value("cds_shadow_runs_total", labels) or 0.0

    job, runs = analysed(63)
    assert job.status == AnalysisJob.Status.SUCCEEDED and runs == [(job.pk, candidate.pk)]
    with caplog.at_level(logging.WARNING, logger="cds.pipeline.shadow"):
        assert shadow_run(job.pk, candidate.pk) == "failed"  # permanent: not retried

    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.SUCCEEDED and job.error == ""
    entry = job.shadow["interp-s7"]
    assert entry["status"] == "failed" and "ModelVersionMismatch" in entry["error"] and "7" in entry["error"]
    assert REGISTRY.get_sample_value("cds_shadow_runs_total", labels) == failed_before + 1
    assert any("interp-s7" in r.getMessage() and "ModelVersionMismatch" in r.getMessage() for r in caplog.records)
    assert not Prediction.objects.filter(job=job, model_name__startswith="shadow:").exists()
    assert Prediction.objects.filter(job=job, model_name=INTERPRETATION_NAME).count() == 1


def _sign(job: AnalysisJob, *, abnormal: bool) -> None:
    """Sign the served verdict of ``job`` so that the truth is ``abnormal`` (quality_factories' way)."""
    prediction = Prediction.objects.get(job=job, model_name=INTERPRETATION_NAME)
    review = Review.objects.filter(job=job).first()
    if review is None:
        queue = Review.Queue.FLAGGED if prediction.flagged else Review.Queue.REANNOTATION
        review = Review.objects.create(job=job, prediction=prediction, recording=job.recording, queue=queue)
    verdict = "accept" if (review.queue == Review.Queue.FLAGGED) == abnormal else "reject"
    number = ReviewRevision.objects.filter(review=review).count() + 1
    first = ReviewRevision.objects.create(review=review, number=number, kind=verdict, verdict=verdict)
    signed = ReviewRevision.objects.create(review=review, number=number + 1, kind="sign", verdict=verdict)
    Review.objects.filter(pk=review.pk).update(
        status=Review.Status.SIGNED, current=signed, signed_revision=signed, decided_at=first.created_at
    )


def test_the_report_and_promotion_read_the_rows_the_shadow_runs_stored(analysed: Any) -> None:
    candidate = register_candidate(
        model_name=INTERPRETATION_NAME, model_version=CANDIDATE, criteria=ANY_SENSITIVITY, min_signed=3,
        detector_version="2",
    )  # fmt: skip
    for ecg_id, abnormal in ((9, False), (63, True), (131, False)):
        job, runs = analysed(ecg_id)
        assert shadow_run(*runs[0]) == "succeeded"
        _sign(job, abnormal=abnormal)

    report = quality_report(resamples=50)
    shadow_figures = report["overall"][f"{CANDIDATE} (shadow)"]
    served_figures = report["overall"][INTERPRETATION_VERSION]
    assert shadow_figures["n"] == served_figures["n"] == 3
    # The same signed truth for both: one abnormal ECG among three.
    assert shadow_figures["n_signed"] == served_figures["n_signed"] == 3
    assert shadow_figures["n_signed_abnormal"] == served_figures["n_signed_abnormal"] == 1

    decision = promote(model_name=INTERPRETATION_NAME, model_version=CANDIDATE, decided_by="qa")
    assert decision.promoted, decision.reasons
    assert decision.record.serving_version == INTERPRETATION_VERSION
    assert decision.record.figures["serving"]["n_signed"] == decision.record.figures["candidate"]["n_signed"] == 3
    candidate.refresh_from_db()
    assert candidate.status == ModelCandidate.Status.PROMOTED
    assert not shadow_candidates().exists()  # promoted: it no longer runs in shadow


@pytest.fixture
def shadow_stack(tmp_path: Path, two_versions: LocalTriton) -> Iterator[LiveStack]:
    """gunicorn and a Celery worker (every queue, shadow included, on one private queue) on the module's Triton."""
    stack = LiveStack(
        tmp_path,
        env={
            "INFERENCE_BACKEND": "triton",
            "TRITON_URL": two_versions.grpc_url,
            "TRITON_PROTOCOL": "grpc",
            "TRITON_HTTP_URL": two_versions.http_url,
            "TRITON_MODEL_VERSIONS": "ecg_detector=1,ecg_foundation=1",
            "INFERENCE_FOUNDATION_ENABLED": str("ecg_foundation" in served_models()).lower(),
            "WRITEBACK_ENABLED": "false",
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.mark.django_db(transaction=True)
def test_a_worker_takes_the_shadow_run_from_the_broker_after_the_served_job(
    shadow_stack: LiveStack, ecg_factory: Any
) -> None:
    candidate = register_candidate(
        model_name=INTERPRETATION_NAME, model_version=CANDIDATE, criteria=ANY_SENSITIVITY, min_signed=1,
        detector_version="2",
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {shadow_stack.token()}", "Content-Type": "application/fhir+json"}
    response = requests.post(
        f"{shadow_stack.base}/fhir/Observation", data=json.dumps(ecg_factory(131)), headers=headers, timeout=30
    )
    assert response.status_code == 201, response.text
    ecg_id = response.json()["id"]
    assert wait_for_job(ecg_id, timeout_s=90) == "succeeded"

    job = AnalysisJob.objects.get(recording__logical_id=ecg_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job.shadow.get(CANDIDATE, {}).get("status") != "succeeded":
        time.sleep(0.3)
        job.refresh_from_db()
    assert job.shadow[CANDIDATE]["status"] == "succeeded", (job.shadow, candidate)
    versions = dict(Prediction.objects.filter(job=job).values_list("model_name", "server_model_version"))
    assert versions[DETECTOR_NAME] == "ecg_detector/1" and versions[f"shadow:{DETECTOR_NAME}"] == "ecg_detector/2"
    verdict = Prediction.objects.get(job=job, model_name=f"shadow:{INTERPRETATION_NAME}")
    assert verdict.model_version == CANDIDATE
    # The served job's own timings do not include the candidate's run (it ran after the commit).
    assert job.finished_at is not None and verdict.created_at > job.finished_at
