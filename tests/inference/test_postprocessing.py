"""Interval extraction and map downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from inference.postprocessing import anomaly_intervals, downsample_map


def test_it_finds_merges_and_ranks_intervals() -> None:
    anomaly_map = np.zeros((2, 5000), dtype=np.float32)  # 10 s at 500 Hz
    anomaly_map[0, 1000:1100] = 2.0  # 200 ms
    anomaly_map[0, 1120:1200] = 2.0  # 40 ms gap: merged with the first
    anomaly_map[1, 3000:3010] = 5.0  # 20 ms: too short
    anomaly_map[1, 4000:4500] = 3.0  # 1 s, strongest
    intervals = anomaly_intervals(anomaly_map, rate_hz=500, leads=["I", "V2"], point_threshold=1.0)
    assert [(i.lead, i.start_ms, i.end_ms) for i in intervals] == [("V2", 8000.0, 9000.0), ("I", 2000.0, 2400.0)]
    assert intervals[0].score == 3.0
    assert 1.0 < intervals[1].score < 2.0  # the merged gap lowers the mean


def test_it_ignores_nan_and_caps_the_count() -> None:
    anomaly_map = np.full((12, 1000), np.nan, dtype=np.float32)
    anomaly_map[:, ::100] = 0
    for lead in range(12):
        anomaly_map[lead, 100:200] = 1 + lead
    intervals = anomaly_intervals(
        anomaly_map, rate_hz=100, leads=[str(i) for i in range(12)], point_threshold=0.5, max_intervals=3
    )
    assert [i.lead for i in intervals] == ["11", "10", "9"]


def test_it_refuses_a_lead_count_mismatch() -> None:
    with pytest.raises(ValueError, match="2 rows but 1 leads"):
        anomaly_intervals(np.zeros((2, 10)), rate_hz=100, leads=["I"], point_threshold=0)


def test_it_pools_the_map_keeping_peaks_visible() -> None:
    anomaly_map = np.zeros((1, 5000))
    anomaly_map[0, 10] = 10.0
    pooled = downsample_map(anomaly_map, rate_hz=500, target_hz=50)
    assert pooled.shape == (1, 500) and pooled[0, 1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        downsample_map(anomaly_map, rate_hz=50, target_hz=100)
