"""Build the models' client from settings and turn a stored ECG into the analyzer's input.

The service reaches the models only through ``inference/`` (docs/style.md G14): Triton by default, or the
in-process backend where Triton cannot run (``INFERENCE_BACKEND=inprocess``, needs torch).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from django.conf import settings

from cds.ecg.models import EcgRecording
from inference.analyzer import Analyzer, EcgInput, InProcessAnalyzer, TritonAnalyzer
from inference.errors import InferenceFailed
from inference.triton_client import TritonClient


@functools.cache
def analyzer() -> Analyzer:
    """Return this process's analyzer (one client and its connections per worker process)."""
    foundation = settings.INFERENCE_FOUNDATION_ENABLED
    if settings.INFERENCE_BACKEND == "inprocess":
        return InProcessAnalyzer(
            detector_checkpoint=Path(settings.INFERENCE_DETECTOR_CHECKPOINT),
            foundation_checkpoint=Path(settings.INFERENCE_FOUNDATION_CHECKPOINT) if foundation else None,
        )
    grpc_url = settings.TRITON_URL if settings.TRITON_PROTOCOL == "grpc" else None
    http_url = settings.TRITON_URL if settings.TRITON_PROTOCOL == "http" else settings.TRITON_HTTP_URL
    client = TritonClient(
        grpc_url=grpc_url or None,
        http_url=http_url or None,
        timeout_s=settings.TRITON_TIMEOUT_S,
        expected_versions=settings.TRITON_MODEL_VERSIONS,
    )
    if not foundation:
        return TritonAnalyzer(client=client, foundation_model=None)
    return TritonAnalyzer(client=client)


def shadow_analyzer(*, detector_version: str, foundation_version: str) -> TritonAnalyzer:
    """Return the served analyzer asking Triton for a candidate's versions (blank: the serving one).

    Raises InferenceFailed (permanent) on the in-process backend, which holds one checkpoint per
    model and so has no second version to run, and for a foundation version where none is served.
    """
    served = analyzer()
    if not isinstance(served, TritonAnalyzer):
        raise InferenceFailed(
            "shadow candidates run on Triton only (INFERENCE_BACKEND=triton)", extra={"backend": "inprocess"}
        )
    versions = {}
    if detector_version:
        versions[served.detector_model] = detector_version
    if foundation_version:
        if served.foundation_model is None:
            raise InferenceFailed(
                "a foundation version to shadow, but the foundation model is off (INFERENCE_FOUNDATION_ENABLED)",
                extra={"foundation_version": foundation_version},
            )
        versions[served.foundation_model] = foundation_version
    return served.with_versions(versions)


def models_ready() -> bool:
    """Return whether the configured models answer (the ``models`` readiness check)."""
    return analyzer().ready()


def ecg_input_for(recording: EcgRecording) -> EcgInput:
    """Return ``recording`` as the analyzer's input: mV, with age (range midpoint) and sex."""
    age = None
    if recording.age_min_years is not None and recording.age_max_years is not None:
        age = (recording.age_min_years + recording.age_max_years) / 2
    return EcgInput(
        signal=recording.waveform().astype(np.float64) / 1000.0,  # stored in µV
        rate_hz=recording.sample_rate_hz,
        leads=tuple(recording.leads),
        age_years=age,
        sex=recording.sex or None,
    )
