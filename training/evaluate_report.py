"""Evaluate the grounded draft report: ``python -m training.evaluate_report --data PATH [--fold 10] [--limit N]``.

PATH is a PTB-XL-layout folder (``ptbxl_database.csv``; only ``--fold``, default 10 = the test fold,
is read; standardized ptb-xl-extra records are skipped) or a PhysioNet/CinC Challenge WFDB
directory (``# Dx`` SNOMED CT codes; every record). Each ECG goes through the in-process analyzer
(both models, every lead, the original rate and full duration, age and sex from the metadata) and
its ``ClinicalReport`` is scored against the dataset's own statements:

- per finding (``FINDINGS``): sensitivity, PPV and rate named on the ECGs without it, each with a
  Wilson 95 % CI. "The report names it" = a finding of ``clinical.findings`` has one of its SNOMED
  codes (the text is built from the findings); ``named_without_words`` counts reports that name it
  while the text lacks its words (a sanity check of the text);
- ``normal_claimed_on_abnormal`` / ``normal_claimed_on_normal``: share of clinically abnormal /
  normal ECGs with a normal verdict ("Normal ECG."). Normal: PTB-XL NORM with at most SR, SARRH or a form statement a NORM diagnosis keeps (ABQRS, NT_, VCLVH, LVOLT, HVOLT, TAB_)
  beside it; Challenge Dx within {sinus rhythm, sinus arrhythmia}. Everything else is abnormal;
- ``sinus_claimed_on_af``: share of AF/flutter ECGs whose report states a sinus rhythm;
- verdict and urgency counts, detector and foundation-model flag rates on normal/abnormal ECGs,
  the measurement time per ECG (``timings_ms`` keys naming clinical/measure) and seconds per ECG.

A per-record table (record, truth, verdict, findings, text) goes to ``--out-dir`` (default
``var/evaluate_report/<dataset>/records.csv``). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from inference.analyzer import EcgInput, InProcessAnalyzer
from inference.clinical.statements import SNOMED_SINUS_FAMILY
from inference.clinical.types import ClinicalReport, Verdict
from inference.errors import InferenceError
from inference.preprocessing import LEADS_12
from training.data.challenge import is_challenge_dir, load_challenge_records
from training.data.ptbxl import NORMAL_FORM_CODES, SINUS_CODES, EcgRecord, load_ptbxl_record
from training.data.splits import TEST_FOLD, load_index

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"

# Truth codes share one namespace: PTB-XL SCP codes as they are, Challenge codes as "SNOMED:<id>"
# (the Challenge loader's ``scp_codes`` keys).
NORMAL_PTBXL = frozenset({"NORM"}) | SINUS_CODES | NORMAL_FORM_CODES  # training.data.ptbxl.clinical_label
NORMAL_CHALLENGE = frozenset({"SNOMED:426783006", "SNOMED:427393009"})


@dataclass(frozen=True)
class FindingSpec:
    """One scored finding: truth codes (both datasets), the SNOMED codes naming it, its words."""

    name: str
    ptbxl: tuple[str, ...]
    snomed: tuple[str, ...]
    words: tuple[str, ...]  # lower-case; the text names the finding if it holds any of them
    note: str = ""

    @property
    def truth(self) -> frozenset[str]:
        """Return the truth codes in the shared namespace."""
        return frozenset(self.ptbxl) | {f"SNOMED:{code}" for code in self.snomed}


FINDINGS = (
    FindingSpec("af_flutter", ("AFIB", "AFLT"), ("164889003", "164890007"), ("atrial fibrillation", "atrial flutter")),
    FindingSpec("rbbb", ("CRBBB",), ("59118001", "713427006"), ("right bundle branch block",)),
    FindingSpec("lbbb", ("CLBBB",), ("164909002", "733534002"), ("left bundle branch block",)),
    FindingSpec("irbbb", ("IRBBB",), ("713426002",), ("incomplete right bundle branch block",)),
    FindingSpec(
        "first_degree_av_block",
        ("1AVB", "LPR"),
        ("270492004",),
        ("first-degree", "first degree", "1st degree", "prolonged pr"),
        "PTB-XL truth includes LPR (prolonged PR interval), which the report states with the same code",
    ),
    FindingSpec("sinus_bradycardia", ("SBRAD",), ("426177001",), ("sinus bradycardia",)),
    FindingSpec("sinus_tachycardia", ("STACH",), ("427084000",), ("sinus tachycardia",)),
    FindingSpec("pvc", ("PVC",), ("427172004", "17338001"), ("ventricular premature", "premature ventricular")),
    FindingSpec(
        "pac",
        ("PAC",),
        ("284470004", "63593006"),
        ("atrial premature", "premature atrial", "supraventricular premature", "premature supraventricular"),
    ),
    FindingSpec(
        "left_axis_deviation",
        ("LAFB",),
        ("39732003",),
        ("left axis",),
        "PTB-XL has no axis statement: LAFB is the proxy (it implies left axis deviation, but left axis "
        "deviation without LAFB counts as a false positive there)",
    ),
    FindingSpec("prolonged_qt", ("LNGQT",), ("111975006",), ("qt",)),
    FindingSpec("low_qrs_voltage", ("LVOLT",), ("251146004",), ("low voltage", "low qrs voltage")),
    FindingSpec(
        "st_deviation",
        ("STE_", "STD_"),
        ("164931005", "429622005"),
        ("elevation", "depression"),
        "PTB-XL truth is its non-specific ST statements only (injury statements not counted)",
    ),
    FindingSpec("paced", ("PACE",), ("10370003",), ("pace", "pacing")),
)
AF_FLUTTER = FINDINGS[0]


@dataclass(frozen=True)
class ScoredEcg:
    """One analysed ECG: its truth codes, the report and the model flags behind it."""

    record_id: str
    truth: frozenset[str]
    clinical: ClinicalReport
    detector_flagged: bool = False
    foundation_flagged: bool | None = None  # None: no foundation result or no operating point
    measurement_ms: float | None = None


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """Return the Wilson score 95 % interval of k successes in n trials (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def rate(k: int, n: int) -> dict[str, Any]:
    """Return {k, n, rate, ci95} for k of n (rate None when n is 0)."""
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": wilson(k, n)}


def truth_is_normal(truth: frozenset[str]) -> bool | None:
    """Return whether the statements describe a clinically normal ECG (None: no statement at all).

    PTB-XL: the clinical rule of ``training.data.ptbxl.clinical_label`` (NORM with at most sinus
    rhythm or sinus arrhythmia and form statements a NORM diagnosis keeps beside it); Challenge: Dx within sinus rhythm and sinus
    arrhythmia. Anything else (any other statement, rhythm or diagnosis) is abnormal.
    """
    if not truth:
        return None
    return truth <= NORMAL_CHALLENGE or ("NORM" in truth and truth <= NORMAL_PTBXL)


def report_names(report: ClinicalReport, snomed: Sequence[str] | frozenset[str]) -> bool:
    """Return whether a finding of the report carries one of the SNOMED codes."""
    return any(f.snomed in snomed for f in report.findings if f.snomed)


def finding_metrics(scored: Sequence[ScoredEcg], spec: FindingSpec) -> dict[str, Any]:
    """Return sensitivity, PPV and the rate named on ECGs without it, with counts and Wilson CIs."""
    truth_codes = spec.truth
    has = [bool(s.truth & truth_codes) for s in scored]
    named = [report_names(s.clinical, spec.snomed) for s in scored]
    n_true = sum(has)
    n_named = sum(named)
    tp = sum(h and m for h, m in zip(has, named, strict=True))
    fp = n_named - tp
    n_others = len(scored) - n_true
    without_words = sum(
        1 for s, m in zip(scored, named, strict=True) if m and not any(w in s.clinical.text.lower() for w in spec.words)
    )
    out: dict[str, Any] = {
        "n_true": n_true,
        "n_named": n_named,
        "tp": tp,
        "sensitivity": round(tp / n_true, 4) if n_true else None,
        "sensitivity_ci95": wilson(tp, n_true),
        "ppv": round(tp / n_named, 4) if n_named else None,
        "ppv_ci95": wilson(tp, n_named),
        "named_on_others": round(fp / n_others, 4) if n_others else None,
        "named_on_others_ci95": wilson(fp, n_others),
        "named_without_words": without_words,
    }
    if spec.note:
        out["note"] = spec.note
    return out


def normal_claims(scored: Sequence[ScoredEcg]) -> dict[str, Any]:
    """Return the share of clinically abnormal and normal ECGs given a normal verdict."""
    labelled = [(truth_is_normal(s.truth), s.clinical.verdict == Verdict.NORMAL) for s in scored]
    abnormal = [claimed for normal, claimed in labelled if normal is False]
    normal = [claimed for normal, claimed in labelled if normal is True]
    return {
        "normal_claimed_on_abnormal": rate(sum(abnormal), len(abnormal)),
        "normal_claimed_on_normal": rate(sum(normal), len(normal)),
        "n_unlabelled": sum(1 for normal, _ in labelled if normal is None),
    }


def sinus_claimed_on_af(scored: Sequence[ScoredEcg]) -> dict[str, Any]:
    """Return the share of AF/flutter ECGs whose report states any sinus rhythm."""
    af = [s for s in scored if s.truth & AF_FLUTTER.truth]
    return rate(sum(report_names(s.clinical, SNOMED_SINUS_FAMILY) for s in af), len(af))


def flag_rates(scored: Sequence[ScoredEcg]) -> dict[str, Any]:
    """Return the detector's and foundation model's flag rates on clinically normal/abnormal ECGs."""
    out: dict[str, Any] = {}
    for group, wanted in (("normal", True), ("abnormal", False)):
        members = [s for s in scored if truth_is_normal(s.truth) is wanted]
        out[f"detector_flag_rate_{group}"] = rate(sum(s.detector_flagged for s in members), len(members))
        rated = [s for s in members if s.foundation_flagged is not None]
        out[f"foundation_flag_rate_{group}"] = rate(sum(bool(s.foundation_flagged) for s in rated), len(rated))
    return out


def report_metrics(scored: Sequence[ScoredEcg]) -> dict[str, Any]:
    """Return every report metric of the scored ECGs (the JSON's clinical part)."""
    costs = [s.measurement_ms for s in scored if s.measurement_ms is not None]
    return {
        "n_reports": len(scored),
        "findings": {spec.name: finding_metrics(scored, spec) for spec in FINDINGS},
        **normal_claims(scored),
        "sinus_claimed_on_af": sinus_claimed_on_af(scored),
        "verdicts": dict(Counter(s.clinical.verdict for s in scored)),
        "urgent": sum(s.clinical.urgency == "urgent" for s in scored),
        **flag_rates(scored),
        "mean_measurement_ms": round(sum(costs) / len(costs), 1) if costs else None,
    }


def ptbxl_records(data: Path, fold: int) -> Iterator[EcgRecord]:
    """Yield the mV records of ``fold`` in every PTB-XL-layout folder under ``data``, by ecg_id."""
    index = load_index(data)
    rows = index[(index["fold"] == fold) & ~index["standardized"].astype(bool)].sort_values("ecg_id")
    for _, row in rows.iterrows():
        yield load_ptbxl_record(Path(row["root"]), row, 500)


def measurement_ms(timings: dict[str, float]) -> float | None:
    """Return the summed time of the clinical measurement steps (None if none is reported)."""
    keys = [k for k in timings if "clinical" in k or "measure" in k]
    return sum(timings[k] for k in keys) if keys else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--fold", type=int, default=TEST_FOLD, help="PTB-XL fold (10 = test; nothing selected on it)")
    parser.add_argument("--limit", type=int, default=0, help="analyse only the first N records (smoke tests)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--detector", type=Path, default=WEIGHTS / "detector.pt")
    parser.add_argument("--foundation", type=Path, default=WEIGHTS / "foundation.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    dataset = args.data.resolve().name
    out_dir = args.out_dir or REPO_ROOT / "var" / "evaluate_report" / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    challenge = is_challenge_dir(args.data)
    records = load_challenge_records(args.data) if challenge else ptbxl_records(args.data, args.fold)
    if args.limit:
        records = islice(records, args.limit)
    analyzer = InProcessAnalyzer(detector_checkpoint=args.detector, foundation_checkpoint=args.foundation)

    # Analyse every record; keep a row per record whatever happens to it.
    scored: list[ScoredEcg] = []
    rows: list[dict[str, Any]] = []
    failures: Counter[str] = Counter()
    seconds: list[float] = []
    for record in records:
        truth = frozenset(record.scp_codes)
        row: dict[str, Any] = {
            "record_id": record.record_id,
            "truth": "normal" if truth_is_normal(truth) else "abnormal" if truth else "",
            "truth_codes": " ".join(sorted(truth)),
            "age": record.age_years,
            "sex": record.sex or "",
        }
        rows.append(row)
        ecg = EcgInput(record.signal, float(record.sample_rate_hz), LEADS_12, record.age_years, record.sex)
        started = time.perf_counter()
        try:
            result = analyzer.analyse(ecg)
        except Exception as exc:  # one ECG's failure is counted and shown, never the run's end
            if not isinstance(exc, InferenceError):
                logger.exception("%s: analysis failed", record.record_id)
            failures[type(exc).__name__] += 1
            row["error"] = f"{type(exc).__name__}: {exc}"
            continue
        seconds.append(time.perf_counter() - started)
        foundation = result.foundation
        foundation_flagged = None
        if foundation is not None and foundation.threshold is not None:
            foundation_flagged = foundation.probability_abnormal >= foundation.threshold
            row["foundation_probability"] = round(foundation.probability_abnormal, 3)
        row["detector_score"] = result.detector.score
        if result.clinical is None:
            failures["no clinical report"] += 1
            row["error"] = "no clinical report"
            continue
        clinical = result.clinical
        row |= {
            "verdict": clinical.verdict,
            "urgency": clinical.urgency,
            "findings": " ".join(f"{f.code}[{f.snomed or '-'}]" for f in clinical.findings),
            "text": clinical.text,
            "decoder_text": clinical.decoder_text,
            "decoder_removed": " | ".join(clinical.decoder_removed),
        }
        scored.append(
            ScoredEcg(
                record_id=record.record_id,
                truth=truth,
                clinical=clinical,
                detector_flagged=result.detector.flagged,
                foundation_flagged=foundation_flagged,
                measurement_ms=measurement_ms(result.timings_ms),
            )
        )
        if len(rows) % 10 == 0:
            logger.info("%d records analysed", len(rows))

    # The per-record table a person reads, then the metrics.
    table = out_dir / "records.csv"
    columns = ["record_id", "truth", "truth_codes", "age", "sex", "verdict", "urgency", "findings", "text"]
    columns += ["detector_score", "foundation_probability", "decoder_text", "decoder_removed", "error"]
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    result_json: dict[str, Any] = {
        "data": str(args.data),
        "dataset": "challenge" if challenge else f"ptbxl fold {args.fold}",
        "n_records": len(rows),
        "failures": dict(failures),
        **report_metrics(scored),
        "seconds_per_ecg": round(sum(seconds) / len(seconds), 3) if seconds else None,
        "records_csv": str(table),
        "eval_wall_seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result_json, default=str))
    return result_json


if __name__ == "__main__":
    main()
