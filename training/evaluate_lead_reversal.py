"""Evaluate (and refit) the intended-use checks: ``python -m training.evaluate_lead_reversal --data PATH``.

PATH is ``../shared/data/ptb-xl-subset`` (or a folder holding it). Electrode reversals are
simulated on the raw signals of PTB-XL fold 10 (:func:`simulate_reversal`) and every variant goes
through the production path (``beats_analyse`` then ``intended_use_findings``). Prints, with
Wilson 95 % intervals: detection rate per swap type on fold 10, false alerts on unmodified fold
10 and folds 1–9, pacing detection on the PACE records and on synthetic spikes added to fold 10,
and false pacing alerts on every other record; ``--challenge DIR`` adds false alerts on an
external set. The last stdout line is one JSON object.

``--fit`` refits the logistic regressions on folds 1–9 (plus ``ptb-xl-extra`` records outside
fold 10 when ``--data`` holds that folder) and prints the constants to paste into
``inference/clinical/intended_use.py``. Swaps are applied to the median beats there, which is
exact: a swap only permutes leads and flips signs, which commutes with ``beats_analyse``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.clinical import intended_use as iu
from inference.clinical.beats import MEDIAN_PRE, beats_analyse
from training.data.ptbxl import LEADS_12, discover_ptbxl_roots, load_ptbxl_index, load_ptbxl_record

LIMB_KINDS = ("LA_RA", "RA_LL")
PRECORDIAL_KINDS = ("V1_V2", "V2_V3", "V3_V4", "V4_V5", "V5_V6")
TEST_FOLD = 10
FALSE_ALERT_SHARE = 0.004  # per group (limb, precordial) on the fitting ECGs: ≤ ~1 % together
SPIKE_AMPLITUDES_MV = (0.5, 1.0, 2.0)
SPIKE_WIDTHS_MS = (1.0, 2.0, 4.0)


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """Return the Wilson score 95 % interval of k successes in n trials."""
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def rate(k: int, n: int) -> dict[str, Any]:
    """Return {k, n, rate, ci95}."""
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": wilson(k, n)}


def _roots(data: Path) -> tuple[Path, Path | None]:
    """Return (the subset folder, the extra folder or None) under ``data``."""
    roots = discover_ptbxl_roots(data)
    subset = [r for r in roots if r.name == "ptb-xl-subset"] or [r for r in roots if "extra" not in r.name]
    extra = [r for r in roots if r.name == "ptb-xl-extra"]
    if not subset:
        raise SystemExit(f"no PTB-XL folder under {data}")
    return subset[0], (extra[0] if extra else None)


def _records(root: Path, folds: set[int] | None) -> list[Any]:
    index = load_ptbxl_index(root)
    rows = [row for _, row in index.iterrows() if folds is None or row["fold"] in folds]
    return [load_ptbxl_record(root, row) for row in rows]


# ------------------------------------------------------------------ fitting
def _feature_rows(median: np.ndarray, r: int) -> dict[str, float]:
    return {**iu.limb_features(median, r), **iu.precordial_features(median, r)}


def fit(data: Path) -> dict[str, Any]:
    """Fit the reversal models on folds 1–9 (+ extra outside fold 10); return constants and figures."""
    from sklearn.linear_model import LogisticRegression

    subset, extra = _roots(data)
    records = _records(subset, set(range(1, TEST_FOLD)))
    if extra is not None:
        records += [r for r in _records(extra, None) if r.strat_fold != TEST_FOLD]
    medians = []
    for rec in records:
        beats = beats_analyse(rec.signal, rec.sample_rate_hz, LEADS_12)
        if beats.n_dominant > 0:
            medians.append(beats.median)
    r = MEDIAN_PRE
    base = [_feature_rows(m, r) for m in medians]
    out: dict[str, Any] = {"n_ecgs": len(medians), "limb": {}, "precordial": {}}
    groups = {"limb": LIMB_KINDS, "precordial": PRECORDIAL_KINDS}
    for group, kinds in groups.items():
        for kind in kinds:
            names = iu._LIMB_FEATURES[kind] if group == "limb" else iu.precordial_feature_names(int(kind[1]))
            swapped = [_feature_rows(iu.simulate_reversal(m, kind), r) for m in medians]
            x0 = np.array([[f[n] for n in names] for f in base])
            x1 = np.array([[f[n] for n in names] for f in swapped])
            ok0, ok1 = np.isfinite(x0).all(1), np.isfinite(x1).all(1)
            x = np.vstack([x0[ok0], x1[ok1]])
            y = np.r_[np.zeros(ok0.sum()), np.ones(ok1.sum())]
            model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
            out[group][kind] = (
                round(float(model.intercept_[0]), 4),
                {n: round(float(c), 4) for n, c in zip(names, model.coef_[0], strict=True)},
            )
    # Thresholds: per group, the max score over its swap types on unmodified ECGs.
    for group in groups:
        models = out[group]
        top = [max((iu._logistic(m, f) or 0.0) for m in models.values()) for f in base]
        out[f"{group}_threshold"] = round(float(np.quantile(top, 1 - FALSE_ALERT_SHARE)), 4)
    return out


# ------------------------------------------------------------------ evaluation
def _flags(rec_signal: np.ndarray, rate_hz: float) -> set[str]:
    beats = beats_analyse(rec_signal, rate_hz, LEADS_12)
    findings = iu.intended_use_findings(rec_signal, rate_hz, LEADS_12, age_years=None, beats=beats)
    return {f.code for f in findings}


def _is_reversal(codes: set[str]) -> bool:
    return any("REVERSAL" in c for c in codes)


def add_spikes(signal: np.ndarray, rate_hz: float, amplitude_mv: float, width_ms: float, seed: int) -> np.ndarray:
    """Return ``signal`` with pacing spikes at 70/min (a random electrode-potential pattern).

    Each spike is a rectangular pulse of ``width_ms`` (at least one sample) followed by a 20 %
    opposite-polarity recovery decaying with a 10 ms time constant; lead voltages follow from
    random potentials at RA, LA, LL and V1–V6 (Einthoven, Goldberger, Wilson), scaled so the
    largest lead sees ``amplitude_mv``.
    """
    rng = np.random.default_rng(seed)
    ra, la, ll, *chest = rng.normal(size=9)
    wct = (ra + la + ll) / 3
    vec = np.array([la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2])
    vec = np.r_[vec, np.array(chest) - wct]
    vec = amplitude_mv * vec / np.abs(vec).max()
    n = signal.shape[1]
    width = max(1, int(round(width_ms * rate_hz / 1000)))
    t = np.arange(int(0.05 * rate_hz))
    tail = -0.2 * np.exp(-t / (0.01 * rate_hz))
    pulse = np.r_[np.ones(width), tail]
    wave = np.zeros(n)
    start = int(rng.uniform(0.1, 0.5) * rate_hz)
    for s in range(start, n - len(pulse), int(rate_hz * 60 / 70)):
        wave[s : s + len(pulse)] += pulse
    return signal + vec[:, None] * wave[None, :]


def evaluate(data: Path, challenge: Path | None) -> dict[str, Any]:
    """Run every evaluation and return the results."""
    subset, _ = _roots(data)
    t0 = time.perf_counter()
    test = _records(subset, {TEST_FOLD})
    train = _records(subset, set(range(1, TEST_FOLD)))
    out: dict[str, Any] = {"data": str(subset), "detection_fold10": {}, "false_alerts": {}}
    unpaced_test = [r for r in test if "PACE" not in r.scp_codes]
    for kind in (*LIMB_KINDS, "LA_LL", *PRECORDIAL_KINDS):
        hits = sum(_is_reversal(_flags(iu.simulate_reversal(r.signal, kind), r.sample_rate_hz)) for r in unpaced_test)
        out["detection_fold10"][kind] = rate(hits, len(unpaced_test))
        print(f"{kind:6s} detected {hits}/{len(unpaced_test)}", flush=True)
    pace_hits, pace_false = 0, 0
    for name, recs in (("fold10", test), ("folds1-9", train)):
        codes = [(r, _flags(r.signal, r.sample_rate_hz)) for r in recs]
        rev = sum(_is_reversal(c) for _, c in codes)
        limb = sum(any(x.startswith("LIMB") for x in c) for _, c in codes)
        out["false_alerts"][name] = {"any_reversal": rate(rev, len(recs)), "limb_reversal": rate(limb, len(recs))}
        pace_hits += sum("PACE" in c for r, c in codes if "PACE" in r.scp_codes)
        pace_false += sum("PACE" in c for r, c in codes if "PACE" not in r.scp_codes)
        print(f"unmodified {name}: reversal alerts {rev}/{len(recs)} (limb {limb})", flush=True)
    n_paced = sum("PACE" in r.scp_codes for r in test + train)
    out["pacing"] = {
        "ptbxl_pace_records_detected": rate(pace_hits, n_paced),
        "false_pacing_on_unpaced": rate(pace_false, len(test) + len(train) - n_paced),
        "synthetic_fold10": {},
    }
    for amp in SPIKE_AMPLITUDES_MV:
        for width in SPIKE_WIDTHS_MS:
            hits = 0
            for i, r in enumerate(unpaced_test):
                raw = add_spikes(r.signal, r.sample_rate_hz, amp, width, seed=i)
                hits += iu._pacing_finding(iu.detect_pacing_spikes(raw, r.sample_rate_hz), None) is not None
            out["pacing"]["synthetic_fold10"][f"{amp}mV_{width}ms"] = rate(hits, len(unpaced_test))
    print(f"pacing: {json.dumps(out['pacing'])}", flush=True)
    if challenge is not None:
        from training.data.challenge import load_challenge_records

        recs = list(load_challenge_records(challenge))
        codes = [_flags(r.signal, r.sample_rate_hz) for r in recs]
        out["false_alerts"]["challenge"] = {
            "any_reversal": rate(sum(_is_reversal(c) for c in codes), len(recs)),
            "pacing": rate(sum("PACE" in c for c in codes), len(recs)),
            "flagged": sorted(r.record_id for r, c in zip(recs, codes, strict=True) if c),
        }
    n_runs = len(unpaced_test) * 9 + len(test) + len(train)
    out["seconds_per_ecg_with_beats"] = round((time.perf_counter() - t0) / max(1, n_runs), 4)
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, then fit or evaluate and print the results (JSON on the last line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--challenge", type=Path, default=None)
    parser.add_argument("--fit", action="store_true", help="refit the reversal models on folds 1–9 (+extra)")
    args = parser.parse_args(argv)
    if args.fit:
        result = fit(args.data)
        for group in ("limb", "precordial"):
            print(f"{group.upper()}_MODELS = {{")
            for kind, (b, coefs) in result[group].items():
                print(f"    {kind!r}: ({b}, {coefs!r}),")
            print("}")
            print(f"{group.upper()}_THRESHOLD = {result[group + '_threshold']}")
        print(json.dumps(result))
        return
    print(json.dumps(evaluate(args.data, args.challenge)))


if __name__ == "__main__":
    main()
