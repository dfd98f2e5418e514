"""Evaluate the clinical measurements and measured statements; last stdout line is JSON.

    python -m training.evaluate_measurements --data ../shared/data/ptb-xl-subset
    python -m training.evaluate_measurements --data ../shared/data/challenge-sample

(a) Synthetic ECGs with known intervals (``training.synthetic_ecg``): mean and SD of the error of
    HR, PR, QRS, QT and QRS axis against the IEC 60601-2-25 / CSE limits, for our global
    median-beat delineation and for neurokit2's ``ecg_delineate`` (dwt, lead II, median over beats);
    AF sensitivity / sinus specificity of the rhythm statement.
(b) Real ECGs: PTB-XL statements that imply a measurement (1AVB → PR > 200 ms, CLBBB/CRBBB →
    QRS ≥ 120 ms, STACH → rate > 100, SBRAD → rate < 60, AFIB → AF statement; NORM → none of these),
    and per-statement sensitivity/specificity against PTB-XL SCP codes (or Challenge SNOMED codes).
    Rules only: nothing is fitted, so all folds are used; fold 10 is reported separately too.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inference.clinical.measurements import measure_ecg
from inference.clinical.scp import SNOMED_OF_SCP
from inference.clinical.statements import measured_findings
from training.synthetic_ecg import synthesize

LIMITS = {"pr_ms": (10.0, 15.0), "qrs_ms": (10.0, 10.0), "qt_ms": (25.0, 30.0)}  # (|mean|, SD) IEC 60601-2-25
# Our statement code -> PTB-XL SCP code with the same meaning.
SCP = {
    "SR": "SR", "SBRAD": "SBRAD", "STACH": "STACH", "SARRH": "SARRH", "AFIB": "AFIB", "PAC": "PAC",
    "PVC": "PVC", "1AVB": "1AVB", "CRBBB": "CRBBB", "IRBBB": "IRBBB", "CLBBB": "CLBBB", "ILBBB": "ILBBB",
    "IVCD": "IVCD", "LQT": "LNGQT", "LVOLT": "LVOLT",
}  # fmt: skip


def _synthetic_cases(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield varied synthetic-ECG options (sinus, all conduction types, noise, wander)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        conduction = ("normal", "normal", "rbbb", "lbbb")[i % 4]
        hr = float(rng.uniform(48, 125))
        qrs = float(rng.uniform(70, 108)) if conduction == "normal" else float(rng.uniform(125, 165))
        # QT from a Fridericia QTc of 380–470 ms, so QT is plausible for the rate.
        qt = float(rng.uniform(380, 470) * (60.0 / hr) ** (1 / 3))
        yield {
            "heart_rate": hr,
            "pr_ms": float(rng.uniform(120, 260)),
            "qrs_ms": qrs,
            "qt_ms": max(qt, qrs + 150),
            "qrs_axis_deg": float(rng.uniform(-60, 110)),
            "conduction": conduction,
            "noise_mv": float(rng.choice([0.0, 0.01, 0.02])),
            "wander_mv": float(rng.choice([0.0, 0.1, 0.3])),
            "rate_hz": int(rng.choice([250, 500, 500, 1000])),
            "seed": i,
        }


def _nk_delineate(signal: np.ndarray, rate_hz: int) -> dict[str, float | None]:
    """Return neurokit2 dwt intervals on lead II (median over beats): the library alternative."""
    import neurokit2 as nk

    out: dict[str, float | None] = {"pr_ms": None, "qrs_ms": None, "qt_ms": None}
    try:
        ecg = nk.ecg_clean(signal[1], sampling_rate=rate_hz)
        _, r = nk.ecg_peaks(ecg, sampling_rate=rate_hz)
        _, w = nk.ecg_delineate(ecg, r, sampling_rate=rate_hz, method="dwt")
    except Exception:  # noqa: BLE001 - a failure is a result here
        return out
    ms = 1000.0 / rate_hz

    def med(a: str, b: str) -> float | None:
        x = np.asarray(w.get(a, []), dtype=float)
        y = np.asarray(w.get(b, []), dtype=float)
        n = min(len(x), len(y))
        d = (y[:n] - x[:n]) * ms
        d = d[np.isfinite(d)]
        return float(np.median(d)) if len(d) else None

    out["pr_ms"] = med("ECG_P_Onsets", "ECG_R_Onsets")
    out["qrs_ms"] = med("ECG_R_Onsets", "ECG_R_Offsets")
    out["qt_ms"] = med("ECG_R_Onsets", "ECG_T_Offsets")
    return out


def _stats(errors: list[float]) -> dict[str, float | int | None]:
    e = np.asarray(errors, dtype=float)
    if not len(e):
        return {"n": 0, "mean": None, "sd": None}
    return {
        "n": int(len(e)),
        "mean": round(float(e.mean()), 1),
        "sd": round(float(e.std(ddof=1)), 1) if len(e) > 1 else None,
    }


def evaluate_synthetic(n: int, n_nk: int) -> dict[str, Any]:
    """Return interval-accuracy tables (ours vs neurokit2 dwt) and rhythm checks on synthetic ECGs."""
    ours: dict[str, list[float]] = {k: [] for k in ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qrs_axis_deg")}
    nk_err: dict[str, list[float]] = {k: [] for k in ("pr_ms", "qrs_ms", "qt_ms")}
    missing = {k: 0 for k in ours}
    nk_missing = {k: 0 for k in nk_err}
    t_ours = t_nk = 0.0
    for i, opts in enumerate(_synthetic_cases(n, seed=11)):
        ecg = synthesize(**opts)
        t0 = time.perf_counter()
        m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
        t_ours += time.perf_counter() - t0
        for k in ours:
            got, true = getattr(m, k), ecg.truth[k]
            if got is None:
                missing[k] += 1
            elif true is not None:
                err = float(got) - float(true)
                if k == "qrs_axis_deg":
                    err = (err + 180.0) % 360.0 - 180.0
                ours[k].append(err)
        if i < n_nk:
            t0 = time.perf_counter()
            nk_m = _nk_delineate(ecg.signal, ecg.rate_hz)
            t_nk += time.perf_counter() - t0
            for k in nk_err:
                if nk_m[k] is None:
                    nk_missing[k] += 1
                else:
                    nk_err[k].append(nk_m[k] - float(ecg.truth[k]))  # type: ignore[operator,arg-type]
    table = {k: {**_stats(v), "not_measured": missing[k]} for k, v in ours.items()}
    for k, (mean_lim, sd_lim) in LIMITS.items():
        s = table[k]
        s["within_iec"] = s["mean"] is not None and abs(s["mean"]) <= mean_lim and (s["sd"] or 0.0) <= sd_lim
    nk_table = {k: {**_stats(v), "not_measured": nk_missing[k]} for k, v in nk_err.items()}
    # Rhythm: AF must be called AF, sinus (with or without 2 PACs) never AF.
    af_hits = sum(_af_called(synthesize(rhythm="af", heart_rate=float(hr), seed=s)) for s, hr in _af_cases())
    sinus_af = sum(
        _af_called(synthesize(heart_rate=float(hr), pac_beats=(3, 8) if s % 2 else (), seed=s)) for s, hr in _af_cases()
    )
    return {
        "cases": n,
        "ours": table,
        "neurokit2_dwt_lead_ii": {"cases": n_nk, **nk_table},
        "ms_per_ecg_ours": round(1000 * t_ours / n, 1),
        "ms_per_ecg_neurokit2_dwt": round(1000 * t_nk / max(1, n_nk), 1),
        "af_sensitivity": f"{af_hits}/{len(_af_cases())}",
        "sinus_called_af": f"{sinus_af}/{len(_af_cases())}",
    }


def _af_cases() -> list[tuple[int, int]]:
    return [(s, hr) for s in range(10) for hr in (70, 100, 130)]


def _af_called(ecg: Any) -> bool:
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    return any(f.code == "AFIB" for f in measured_findings(m))


def _records(data: Path) -> Iterator[tuple[Any, set[str], int | None, str | None]]:
    """Yield (record, label codes, fold, sex) from a PTB-XL folder or a Challenge directory."""
    from training.data.challenge import is_challenge_dir, load_challenge_records
    from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

    if is_challenge_dir(data):
        for rec in load_challenge_records(data):
            yield rec, {c.split(":", 1)[1] for c in rec.scp_codes}, None, rec.sex
        return
    db = load_ptbxl_index(data)
    for _, row in db.iterrows():
        try:
            rec = load_ptbxl_record(data, row, 500)
        except (ValueError, FileNotFoundError):
            continue
        yield rec, set(row["scp_dict"]), row["fold"], row["sex_str"]


def _implied(labels: set[str], m: Any, codes: set[str]) -> dict[str, bool | None]:
    """Return, per PTB-XL label implying a measurement, whether the measurement agrees."""
    out: dict[str, bool | None] = {}
    if "1AVB" in labels:
        out["1AVB: PR > 200"] = m.pr_ms is not None and m.pr_ms > 200
    for lab in ("CLBBB", "CRBBB"):
        if lab in labels:
            out[f"{lab}: QRS >= 120"] = m.qrs_ms is not None and m.qrs_ms >= 120
    if "STACH" in labels:
        out["STACH: rate > 100"] = m.heart_rate_bpm is not None and m.heart_rate_bpm > 100
    if "SBRAD" in labels:
        out["SBRAD: rate < 60"] = m.heart_rate_bpm is not None and m.heart_rate_bpm < 60
    if "AFIB" in labels:
        out["AFIB: AF statement"] = "AFIB" in codes
    if "NORM" in labels:
        out["NORM: none of AF/BBB/1AVB"] = not ({"AFIB", "CLBBB", "CRBBB", "1AVB"} & codes)
    return out


def evaluate_real(data: Path) -> dict[str, Any]:
    """Return implied-measurement agreement and per-statement sensitivity/specificity."""
    challenge = False
    rows: list[dict[str, Any]] = []
    times: list[float] = []
    for rec, labels, fold, sex in _records(data):
        if rec.standardized:
            continue  # z-scored records (ptb-xl-extra): amplitude criteria do not apply
        challenge = fold is None and rec.record_id.startswith("challenge:")
        t0 = time.perf_counter()
        m = measure_ecg(rec.signal, rec.sample_rate_hz)
        findings = measured_findings(m, sex=sex, age_years=rec.age_years)
        times.append(time.perf_counter() - t0)
        codes = {f.code for f in findings}
        snomed = {f.snomed for f in findings if f.snomed}
        rows.append(
            {"labels": labels, "codes": codes, "snomed": snomed, "fold": fold, "implied": _implied(labels, m, codes)}
        )
    if not rows:
        return {"records": 0}

    def summarise(subset: list[dict[str, Any]]) -> dict[str, Any]:
        implied: dict[str, list[int]] = {}
        for r in subset:
            for k, ok in r["implied"].items():
                implied.setdefault(k, [0, 0])
                implied[k][0] += int(bool(ok))
                implied[k][1] += 1
        per: dict[str, Any] = {}
        for ours, scp in SCP.items():
            if challenge:
                return_code = SNOMED_OF_SCP[scp]
                pos = [return_code in r["labels"] for r in subset]
                pred = [return_code in r["snomed"] for r in subset]
            else:
                pos = [scp in r["labels"] for r in subset]
                pred = [ours in r["codes"] for r in subset]
            tp = sum(p and q for p, q in zip(pos, pred, strict=True))
            fn = sum(p and not q for p, q in zip(pos, pred, strict=True))
            tn = sum(not p and not q for p, q in zip(pos, pred, strict=True))
            fp = sum(not p and q for p, q in zip(pos, pred, strict=True))
            per[ours] = {
                "positives": tp + fn,
                "sensitivity": f"{tp}/{tp + fn}",
                "specificity": f"{tn}/{tn + fp}",
                "ppv": f"{tp}/{tp + fp}",
            }
        return {"records": len(subset), "implied": {k: f"{a}/{b}" for k, (a, b) in implied.items()}, "statements": per}

    out = {"all": summarise(rows), "ms_per_ecg": round(1000 * float(np.mean(times)), 1)}
    if any(r["fold"] == 10 for r in rows):
        out["fold10"] = summarise([r for r in rows if r["fold"] == 10])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both evaluations, print readable tables and the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="PTB-XL-layout folder or Challenge WFDB dir")
    parser.add_argument("--synthetic", type=int, default=80, help="synthetic ECGs for interval accuracy")
    parser.add_argument("--neurokit", type=int, default=40, help="of which also delineated by neurokit2 dwt")
    args = parser.parse_args(argv)
    synthetic = evaluate_synthetic(args.synthetic, min(args.neurokit, args.synthetic))
    print("synthetic interval error (measured - true), ours:")
    for k, s in synthetic["ours"].items():
        print(f"  {k:16s} n={s['n']:3d} mean={s['mean']} sd={s['sd']} not_measured={s['not_measured']}")
    print("neurokit2 dwt (lead II):")
    for k, s in synthetic["neurokit2_dwt_lead_ii"].items():
        if isinstance(s, dict):
            print(f"  {k:16s} n={s['n']:3d} mean={s['mean']} sd={s['sd']} not_measured={s['not_measured']}")
    real = evaluate_real(args.data)
    for part in ("all", "fold10"):
        if part in real:
            print(f"{args.data} [{part}] records={real[part]['records']}")
            for k, v in real[part]["implied"].items():
                print(f"  {k:28s} {v}")
            for k, v in real[part]["statements"].items():
                if v["positives"] or v["ppv"] != "0/0":
                    print(f"  {k:6s} sens {v['sensitivity']:>8s}  spec {v['specificity']:>9s}  ppv {v['ppv']}")
    result = {"data": str(args.data), "synthetic": synthetic, "real": real}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
