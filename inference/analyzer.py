"""Analyse one ECG with the served models: preprocess, infer (Triton or in-process), post-process.

Two backends share one interface (``Analyzer.analyse``) and every step but the forward pass:

- ``TritonAnalyzer``: the production path and the default wherever Triton runs; the operating
  point and model version label are those of the version Triton says it ran (the config's
  ``serving_v<N>`` entry, copied from ``<N>/serving.json`` by ``python -m inference.export``), so
  with two versions served each prediction is read with its own threshold and label.
- ``InProcessAnalyzer``: runs the same checkpoints with torch in this process, for machines where
  Triton cannot run. It needs the ``ml`` extra; the service image never takes this path.

numpy + tritonclient only at import time (docs/style.md G14); torch is imported lazily by the in-process
backend alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.analysis_result import AnalysisResult
from inference.clinical.conditioning import measured_vector
from inference.clinical.interpret import MeasuredEcg, interpretation_of, measure_and_state
from inference.errors import InferenceFailed, UnscorableEcg
from inference.foundation_postprocessing import (
    FOUNDATION_OUTPUTS,
    FOUNDATION_OUTPUTS_ALL,
    FoundationServing,
    foundation_result,
)
from inference.localization import MODEL_ONLY, evidence_layers, localize
from inference.model_repository import version_serving
from inference.postprocessing import anomaly_intervals, downsample_map
from inference.preprocessing import (
    DETECTOR_RATE_HZ,
    LEADS_12,
    RECORD_SAMPLES,
    DetectorInputs,
    FoundationInputs,
    detector_inputs,
    foundation_inputs,
    stack_detector_inputs,
)
from inference.results import DETECTOR_NAME, AnomalyInterval, DetectorResult, FoundationResult
from inference.triton_client import TritonClient

DETECTOR_MODEL = "ecg_detector"
DETECTOR_OUTPUTS = ("score__0", "anomaly_map__1", "attributes__2")
FOUNDATION_MODEL = "ecg_foundation"  # classifier and report from one encoder pass (issue 14)
# The stored map: 50 Hz keeps a QRS-wide peak (80-120 ms) visible at a fifth of the size.
STORED_MAP_RATE_HZ = 50.0


@dataclass(frozen=True)
class EcgInput:
    """One ECG as the service stores it: ``signal`` is (leads, samples) in mV, NaN where missing."""

    signal: np.ndarray
    rate_hz: float
    leads: tuple[str, ...]
    age_years: float | None = None
    sex: str | None = None


@dataclass(frozen=True)
class DetectorServing:
    """The detector's operating point and version label (from the served config or the checkpoint)."""

    version_label: str
    score_mean: float  # raw-score mean of validation normals: the calibrated score is a z-score
    score_std: float
    threshold: float  # on the calibrated score; at or above = flagged
    map_threshold: float  # anomaly-map level that marks an interval
    map_rate_hz: float = float(DETECTOR_RATE_HZ)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], model: str = DETECTOR_MODEL) -> DetectorServing:
        """Build from a Triton config's string parameters; raise InferenceFailed naming a missing key."""
        keys = ("model_version_label", "score_mean", "score_std", "threshold", "map_threshold")
        missing = [key for key in keys if not parameters.get(key)]
        if missing:
            raise InferenceFailed(
                f"{model}: config parameters lack {missing}; rebuild the repository with python -m inference.export",
                extra={"model": model, "missing": missing},
            )
        return cls(
            version_label=parameters["model_version_label"],
            score_mean=float(parameters["score_mean"]),
            score_std=float(parameters["score_std"]),
            threshold=float(parameters["threshold"]),
            map_threshold=float(parameters["map_threshold"]),
            map_rate_hz=float(parameters.get("map_rate_hz") or DETECTOR_RATE_HZ),
        )


class Analyzer(Protocol):
    """What the analysis job calls."""

    def analyse(self, ecg: EcgInput) -> AnalysisResult:
        """Return both models' results for ``ecg``; raise ``inference.errors`` classes."""
        ...

    def ready(self) -> bool:
        """Return whether the models can be reached now (readiness probe; never raises)."""
        ...


def prepare_detector_inputs(ecg: EcgInput) -> DetectorInputs:
    """Return the detector's inputs; raise UnscorableEcg naming why the ECG cannot be scored."""
    try:
        return detector_inputs(np.asarray(ecg.signal, dtype=np.float64), ecg.rate_hz, ecg.leads)
    except ValueError as exc:
        raise UnscorableEcg(f"the detector cannot score this ECG: {exc}", extra={"reason": str(exc)}) from exc


def record_view_offset_ms(n_samples: int, rate_hz: float) -> float:
    """Return where the detector's centred 9.6 s view starts in the recording, in ms.

    Mirrors ``inference.preprocessing``: resample to 250 Hz (polyphase, ``ceil(n * up / down)``
    samples), then centre-crop; shorter recordings are padded at the end, so they start at 0.
    """
    frac = Fraction(DETECTOR_RATE_HZ / rate_hz).limit_denominator(1000)
    resampled = (
        n_samples if abs(rate_hz - DETECTOR_RATE_HZ) < 1e-9 else -(-n_samples * frac.numerator // frac.denominator)
    )
    start = max(0, (resampled - RECORD_SAMPLES) // 2)
    return start * 1000.0 / DETECTOR_RATE_HZ


def detector_result(
    ecg: EcgInput,
    inputs: DetectorInputs,
    *,
    raw_score: float,
    anomaly_map: np.ndarray,
    serving: DetectorServing,
    server_model_version: str,
    timings_ms: dict[str, float],
    measured: MeasuredEcg | None = None,
) -> DetectorResult:
    """Turn one ECG's raw outputs into what is stored and shown.

    1. Calibrate: z-score against validation normals; flagged at or above the operating point.
    2. Per-lead scores: mean map over the lead's real samples (unusable leads are left out).
    3. Intervals, in ms from the start of the recording. With the job's measurements
       (``measured``): ``inference.localization`` fuses the map with the measured evidence and
       returns at most 4 boxes, each labelled with its finding; boxes on the detector's map alone
       only for a flagged ECG. Without them: spans above the map threshold, flagged ECGs only
       (below the operating point the map's peaks are ordinary beat-to-beat variation).
    4. Stored map: pooled to 50 Hz; NaN on unusable leads and padding so nobody reads them as normal.
    Raises InferenceFailed on a non-finite score (the model must never return one silently).
    """
    started = time.perf_counter()
    score = (raw_score - serving.score_mean) / serving.score_std
    if not np.isfinite(score):
        raise InferenceFailed(f"{DETECTOR_MODEL}: non-finite score {raw_score}", extra={"quality": inputs.flags})
    valid = inputs.lead_valid[:, None] & inputs.sample_valid[None, :]
    amap = np.where(valid, anomaly_map, np.nan).astype(np.float32)
    per_lead = {lead: round(float(np.nanmean(amap[i])), 4) for i, lead in enumerate(LEADS_12) if inputs.lead_valid[i]}
    offset_ms = record_view_offset_ms(ecg.signal.shape[1], ecg.rate_hz)
    intervals: tuple[AnomalyInterval, ...] = ()
    if measured is not None and measured.beats is not None:
        intervals = localize(
            layers=evidence_layers(measured.beats, measured.findings, measured.measurements),
            rate_hz=measured.beats.rate_hz,
            detector_map=np.where(valid, anomaly_map, 0.0),
            map_threshold=serving.map_threshold,
            valid=valid,
            offset_ms=offset_ms,
            show_model_only=bool(score >= serving.threshold),
        ).intervals
    elif score >= serving.threshold:
        intervals = tuple(
            replace(interval, start_ms=interval.start_ms + offset_ms, end_ms=interval.end_ms + offset_ms)
            for interval in anomaly_intervals(
                amap, rate_hz=serving.map_rate_hz, leads=LEADS_12, point_threshold=serving.map_threshold
            )
        )
    stored = downsample_map(amap, serving.map_rate_hz, STORED_MAP_RATE_HZ)
    timings = {**timings_ms, "postprocess_ms": round((time.perf_counter() - started) * 1000, 3)}
    return DetectorResult(
        model_name=DETECTOR_NAME,
        model_version=serving.version_label,
        score=round(float(score), 4),
        threshold=round(serving.threshold, 4),
        per_lead_scores=per_lead,
        anomaly_map=stored,
        map_rate_hz=serving.map_rate_hz / round(serving.map_rate_hz / STORED_MAP_RATE_HZ),
        leads=LEADS_12,
        intervals=intervals,
        quality=inputs.flags,
        server_model_version=server_model_version,
        timings_ms=timings,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def prepare_foundation_inputs(ecg: EcgInput) -> FoundationInputs:
    """Return the foundation model's inputs; raise UnscorableEcg naming why it cannot run."""
    try:
        return foundation_inputs(np.asarray(ecg.signal, dtype=np.float64), ecg.rate_hz, ecg.leads)
    except ValueError as exc:
        raise UnscorableEcg(f"the foundation model cannot read this ECG: {exc}", extra={"reason": str(exc)}) from exc


@dataclass
class TritonAnalyzer:
    """Analyse ECGs with the models Triton serves.

    Two requests per ECG: the detector and ``ecg_foundation`` (classifier and report from one encoder
    pass). Not one ensemble request: an ensemble's response names the ensemble's version, not its
    steps', and each step's outputs must be read with its own version's serving facts.
    ``foundation_model`` None: the detector alone (a deployment that serves only it).
    ``versions`` asks for other versions than the client's pinned ones (``{model: version}``): a
    candidate in shadow runs the same code at its own versions (``with_versions``).
    Serving facts are cached per (model, version): a version's facts never change (its label holds
    the checkpoint's hash), and another version is always looked up anew.
    """

    client: TritonClient
    detector_model: str = DETECTOR_MODEL
    foundation_model: str | None = FOUNDATION_MODEL
    versions: Mapping[str, str] = field(default_factory=dict)
    _facts: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def with_versions(self, versions: Mapping[str, str]) -> TritonAnalyzer:
        """Return an analyzer on the same client that asks for ``versions`` ({model: version}) instead.

        Models not named keep this analyzer's version. The serving-facts cache is shared: it is
        keyed by (model, version).
        """
        return replace(self, versions={**self.versions, **versions})

    def serving_facts(self, model: str, version: str) -> dict[str, str]:
        """Return the serving facts of ``model`` at ``version`` (the version a response names).

        Raises InferenceFailed when the served config has none for that version.
        """
        key = (model, version)
        if key not in self._facts:
            parameters = self.client.model_parameters(model, version)
            try:
                self._facts[key] = version_serving(parameters, model, version)
            except LookupError as exc:
                raise InferenceFailed(str(exc), extra={"model": model, "version": version}) from exc
        return self._facts[key]

    def detector_serving(self, version: str) -> DetectorServing:
        """Return the operating point of the detector version ``version``."""
        return DetectorServing.from_parameters(self.serving_facts(self.detector_model, version), self.detector_model)

    def foundation_serving(self, version: str) -> FoundationServing:
        """Return what is needed to build the foundation model's request and read its outputs at ``version``."""
        assert self.foundation_model
        return FoundationServing.from_parameters(self.serving_facts(self.foundation_model, version))

    def ready(self) -> bool:
        """Return whether Triton answers and serves every configured model."""
        models = [self.detector_model, self.foundation_model]
        return all(self.client.model_ready(model) for model in models if model)

    def analyse(self, ecg: EcgInput) -> AnalysisResult:
        """Return both models' results for ``ecg``, with its measurements and grounded report."""
        measured = measure_ecg_input(ecg)  # before the models: the report model reads the findings
        started = time.perf_counter()
        inputs = prepare_detector_inputs(ecg)
        timings = {"preprocess_ms": _ms_since(started)}
        started = time.perf_counter()
        answer = self.client.infer_result(
            self.detector_model,
            stack_detector_inputs([inputs]),
            DETECTOR_OUTPUTS,
            version=self.versions.get(self.detector_model),  # None: the client's pinned version
        )
        timings["triton_ms"] = _ms_since(started)
        detector = detector_result(
            ecg,
            inputs,
            raw_score=float(answer.outputs["score__0"].reshape(-1)[0]),
            anomaly_map=answer.outputs["anomaly_map__1"][0],
            serving=self.detector_serving(answer.model_version),
            server_model_version=f"{answer.model_name}/{answer.model_version}",
            timings_ms=timings,
            measured=measured,
        )
        if not self.foundation_model:
            return with_interpretation(measured, detector, None)
        started = time.perf_counter()
        f_inputs = prepare_foundation_inputs(ecg)
        f_timings = {"preprocess_ms": _ms_since(started)}
        # The request depends on the version (a conditioned one takes the measured findings), so
        # the version is chosen before the call and asked for by number.
        version = self._foundation_version()
        started = time.perf_counter()
        answer = self._foundation(f_inputs, measured, version)
        f_timings["triton_ms"] = _ms_since(started)
        foundation = foundation_result(
            answer.outputs,
            f_inputs.lead_mask,
            serving=self.foundation_serving(answer.model_version),  # the version Triton says it ran
            detector_z=detector.score,  # calibrated: a z-score against validation normals
            server_model_version=f"{answer.model_name}/{answer.model_version}",
            timings_ms=f_timings,
        )
        return with_interpretation(measured, detector, foundation)

    def _foundation_version(self) -> str:
        """Return the foundation model version to ask for: this analyzer's, the pinned one, else the newest served.

        Deployments pin versions (TRITON_MODEL_VERSIONS), so the metadata call is made only
        where none is pinned.
        """
        assert self.foundation_model
        pinned = self.versions.get(self.foundation_model) or self.client.expected_versions.get(self.foundation_model)
        if pinned:
            return pinned
        return max(self.client.model_versions(self.foundation_model), key=int)

    def _foundation(self, f_inputs: FoundationInputs, measured: MeasuredEcg, version: str) -> Any:
        """Call foundation model ``version`` once: classifier outputs and report ids of one encoder pass."""
        assert self.foundation_model
        serving = self.foundation_serving(version)
        arrays = serving.inputs(f_inputs.signal, f_inputs.lead_mask, foundation_measured(measured, serving))
        return self.client.infer_result(self.foundation_model, arrays, FOUNDATION_OUTPUTS, version=version)


def measure_ecg_input(ecg: EcgInput) -> MeasuredEcg:
    """Return the measurements and statements of ``ecg`` (once per job; never raises on bad signals)."""
    return measure_and_state(
        np.asarray(ecg.signal, dtype=np.float64), ecg.rate_hz, ecg.leads, age_years=ecg.age_years, sex=ecg.sex
    )


def with_interpretation(
    measured: MeasuredEcg, detector: DetectorResult, foundation: FoundationResult | None
) -> AnalysisResult:
    """Return both models' results with the ECG's measurements and grounded report added."""
    interpretation = interpretation_of(measured, detector=detector, foundation=foundation)
    if interpretation.clinical is not None:
        detector = boxes_for_verdict(detector, flagged=interpretation.clinical.flagged)
    return AnalysisResult(
        detector=detector,
        foundation=foundation,
        measurements=interpretation.measurements,
        clinical=interpretation.clinical,
        timings_ms=_merge_timings(detector, foundation)
        | {f"clinical_{k}": v for k, v in interpretation.timings_ms.items()},
    )


def boxes_for_verdict(detector: DetectorResult, *, flagged: bool) -> DetectorResult:
    """Return ``detector`` without its model-only boxes when the verdict is normal.

    Boxes on the detector's map alone belong to an abnormal verdict: the combined evidence (issue 12)
    can call normal an ECG the detector alone flagged, and there they would invite over-reading.
    Boxes a measured finding explains stay (the finding is named in the report either way).
    """
    if flagged:
        return detector
    kept = tuple(i for i in detector.intervals if i.finding != MODEL_ONLY)
    return detector if len(kept) == len(detector.intervals) else replace(detector, intervals=kept)


def _merge_timings(detector: DetectorResult, foundation: FoundationResult | None) -> dict[str, float]:
    """Return the job's timings: the detector's as they are, the foundation model's prefixed."""
    merged = dict(detector.timings_ms)
    if foundation is not None:
        merged |= {f"foundation_{key}": value for key, value in foundation.timings_ms.items()}
    return merged


@dataclass
class InProcessAnalyzer:
    """Analyse ECGs with the checkpoints in this process (torch needed; no Triton).

    Runs the same modules Triton serves (``inference.export``'s wrappers), eagerly, and reads their
    outputs with the same post-processing. ``foundation_checkpoint`` None: the detector alone.
    ``device`` ("cpu", "cuda") is where the modules run (bench/gpu_check.py times it on a GPU).
    """

    detector_checkpoint: Path
    foundation_checkpoint: Path | None = None
    threads: int = 1
    device: str = "cpu"
    _detector: Any = None
    _detector_serving: DetectorServing | None = None
    _foundation: Any = None
    _foundation_serving: FoundationServing | None = None

    def _load(self) -> None:
        import torch  # noqa: PLC0415 ml extra, in-process backend only

        torch.set_num_threads(self.threads)
        if self._detector is None:
            from ecg_models.anomaly_detector import from_checkpoint  # noqa: PLC0415 ml extra, in-process backend only
            from inference.export import detector_parameters  # noqa: PLC0415 ml extra, in-process backend only

            ckpt = torch.load(self.detector_checkpoint, map_location="cpu", weights_only=False)
            self._detector_serving = DetectorServing.from_parameters(
                detector_parameters(self.detector_checkpoint, ckpt["operating_point"])
            )
            self._detector = from_checkpoint(self.detector_checkpoint).eval().to(self.device)
        if self._foundation is None and self.foundation_checkpoint is not None:
            from inference.export_foundation import served_foundation  # noqa: PLC0415 ml extra, in-process backend only

            self._foundation = served_foundation(self.foundation_checkpoint)
            self._foundation.module.to(self.device)
            self._foundation_serving = FoundationServing.from_parameters(self._foundation.parameters)

    def ready(self) -> bool:
        """Return whether the checkpoints are there to load."""
        paths = [self.detector_checkpoint, self.foundation_checkpoint]
        return all(path.is_file() for path in paths if path is not None)

    def analyse(self, ecg: EcgInput) -> AnalysisResult:
        """Return both models' results for ``ecg``, computed here."""
        import torch  # noqa: PLC0415 ml extra, in-process backend only

        self._load()
        assert self._detector_serving is not None
        measured = measure_ecg_input(ecg)  # before the models: the report model reads the findings
        started = time.perf_counter()
        inputs = prepare_detector_inputs(ecg)
        timings = {"preprocess_ms": _ms_since(started)}
        started = time.perf_counter()
        with torch.inference_mode():
            tensors = [torch.from_numpy(array).to(self.device) for array in stack_detector_inputs([inputs]).values()]
            score, anomaly_map, _ = (output.cpu() for output in self._detector(*tensors))
        timings["model_ms"] = _ms_since(started)
        detector = detector_result(
            ecg,
            inputs,
            raw_score=float(score[0]),
            anomaly_map=anomaly_map[0].numpy(),
            serving=self._detector_serving,
            server_model_version="in-process",
            timings_ms=timings,
            measured=measured,
        )
        foundation = None
        if self._foundation is not None and self._foundation_serving is not None:
            started = time.perf_counter()
            f_inputs = prepare_foundation_inputs(ecg)
            f_timings = {"preprocess_ms": _ms_since(started)}
            started = time.perf_counter()
            serving = self._foundation_serving
            arrays = serving.inputs(f_inputs.signal, f_inputs.lead_mask, foundation_measured(measured, serving))
            with torch.inference_mode():
                results = self._foundation.module(*(torch.from_numpy(a).to(self.device) for a in arrays.values()))
                outputs = {n: t.cpu().numpy() for n, t in zip(FOUNDATION_OUTPUTS_ALL, results, strict=True)}
            f_timings["model_ms"] = _ms_since(started)
            foundation = foundation_result(
                outputs,
                f_inputs.lead_mask,
                serving=self._foundation_serving,
                detector_z=detector.score,  # calibrated: a z-score against validation normals
                server_model_version="in-process",
                timings_ms=f_timings,
            )
        return with_interpretation(measured, detector, foundation)


# --- decoder conditioning: the foundation model's measured-findings input ------------------------


def foundation_measured(measured: MeasuredEcg, serving: FoundationServing) -> np.ndarray | None:
    """Return the measured-findings vector (K,) for the foundation model, or None when it takes none."""
    if not serving.measured_codes:
        return None
    return measured_vector(measured.findings)
