"""Turn raw model outputs into what clinicians see: intervals, a compact anomaly map, a flag.

numpy only (serving and the Django side import it; no torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.results import AnomalyInterval


def downsample_map(anomaly_map: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Return ``anomaly_map`` ``(leads, samples)`` average-pooled to about ``target_hz``.

    Pooling (not decimation) keeps short peaks visible in the stored map. Raises ValueError for a
    target above the input rate.
    """
    if target_hz > rate_hz:
        raise ValueError(f"target rate {target_hz} Hz exceeds the map's {rate_hz} Hz")
    factor = int(round(rate_hz / target_hz))
    leads, samples = anomaly_map.shape
    usable = samples - samples % factor
    pooled = np.nanmean(anomaly_map[:, :usable].reshape(leads, usable // factor, factor), axis=2)
    return pooled.astype(np.float32)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Return ``[start, end)`` index pairs of the True runs of a 1-D boolean mask."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def anomaly_intervals(
    anomaly_map: np.ndarray,
    *,
    rate_hz: float,
    leads: Sequence[str],
    point_threshold: float,
    min_duration_ms: float = 40.0,
    merge_gap_ms: float = 80.0,
    max_intervals: int = 12,
) -> tuple[AnomalyInterval, ...]:
    """Return the spans where a lead's map stays above ``point_threshold``, strongest first.

    1. Per lead, mark samples above the threshold (NaN counts as below).
    2. Merge runs separated by less than ``merge_gap_ms``; drop runs shorter than ``min_duration_ms``.
    3. Score each span by its mean map value; keep the ``max_intervals`` highest.
    """
    if anomaly_map.shape[0] != len(leads):
        raise ValueError(f"map has {anomaly_map.shape[0]} rows but {len(leads)} leads were named")
    ms_per_sample = 1000.0 / rate_hz
    gap = int(round(merge_gap_ms / ms_per_sample))
    intervals = []
    for lead, row in zip(leads, anomaly_map, strict=True):
        above = np.nan_to_num(row, nan=-np.inf) > point_threshold
        merged: list[list[int]] = []
        for start, end in _runs(above):
            if merged and start - merged[-1][1] <= gap:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        for start, end in merged:
            if (end - start) * ms_per_sample < min_duration_ms:
                continue
            score = float(np.nanmean(row[start:end]))
            intervals.append(
                AnomalyInterval(lead=lead, start_ms=start * ms_per_sample, end_ms=end * ms_per_sample, score=score)
            )
    intervals.sort(key=lambda interval: interval.score, reverse=True)
    return tuple(intervals[:max_intervals])
