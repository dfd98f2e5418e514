"""Server-side SVG plots (matplotlib, Agg): the 12-lead ECG on paper and the quality charts.

The ECG is drawn at true paper scale (25 mm/s, 10 mm/mV; 1 mm minor and 5 mm major grid), either
12 × 1 (each lead over 10 s, the review default: intervals anywhere are visible) or the classic
3 × 4 layout of 2.5 s per lead, with a 10 s lead II rhythm strip underneath. The anomaly map is
a per-lead heat band behind each trace (grey where the map is NaN: unusable input); intervals are
outlined boxes on their lead.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

MM_PER_S = 25.0
MM_PER_MV = 10.0
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
COLUMN_S = 2.5
ROW_MM = 30.0  # 3 mV per row: room for QRS complexes without overlap in most ECGs
ROW_MM_12X1 = 20.0  # 2 mV per row keeps 13 rows on one screen; tall QRS may touch the next row
GRID_MINOR, GRID_MAJOR = "#f6c6c6", "#e48a8a"
# Plot at most this rate: a 25 mm/s trace cannot show more than ~100 points per mm anyway.
MAX_PLOT_RATE_HZ = 250.0


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is inlined in HTML


def _paper(ax: Any, width_mm: float, height_mm: float) -> None:
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_aspect("equal")
    for spacing, color, width in ((1.0, GRID_MINOR, 0.25), (5.0, GRID_MAJOR, 0.5)):
        ax.vlines(np.arange(0, width_mm + 0.01, spacing), 0, height_mm, colors=color, linewidths=width, zorder=0)
        ax.hlines(np.arange(0, height_mm + 0.01, spacing), 0, width_mm, colors=color, linewidths=width, zorder=0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _decimate(signal: np.ndarray, rate_hz: float) -> tuple[np.ndarray, float]:
    step = max(1, int(rate_hz // MAX_PLOT_RATE_HZ))
    return signal[..., ::step], rate_hz / step


def _heat(ax: Any, values: np.ndarray, x0: float, x1: float, y0: float, y1: float, vmax: float) -> None:
    if values.size == 0:
        return
    band = np.ma.masked_invalid(values[None, :])  # type: ignore[no-untyped-call]
    ax.imshow(
        band, extent=(x0, x1, y0, y1), aspect="auto", cmap="Reds", vmin=0.0, vmax=vmax, alpha=0.35,
        interpolation="none", zorder=1,
    )  # fmt: skip
    unusable = np.isnan(values)
    if unusable.any():
        ax.imshow(
            np.where(unusable, 1.0, np.nan)[None, :], extent=(x0, x1, y0, y1), aspect="auto", cmap="Greys",
            vmin=0.0, vmax=2.5, alpha=0.5, interpolation="none", zorder=1,
        )  # fmt: skip


def ecg_paper_svg(
    *,
    signal_uv: np.ndarray,
    leads: Sequence[str],
    sample_rate_hz: float,
    anomaly_map: np.ndarray | None = None,
    map_leads: Sequence[str] = (),
    map_rate_hz: float | None = None,
    intervals: Sequence[dict[str, Any]] = (),
    title: str = "",
    layout: str = "12x1",
) -> str:
    """Return the 12-lead ECG as an inline SVG string on ECG paper.

    ``layout`` "12x1" draws each lead over the whole 10 s (every interval visible); "3x4" is the
    classic 2.5 s per lead grid. Both end with the lead II rhythm strip.

    ``signal_uv`` is (leads, samples) in µV; ``anomaly_map`` is (len(map_leads), n) at ``map_rate_hz``.
    Leads absent from ``leads`` leave their panel empty (labelled "not recorded").
    """
    signal, rate = _decimate(np.asarray(signal_uv, dtype=np.float32) / 1000.0, sample_rate_hz)
    index = {lead: i for i, lead in enumerate(leads)}
    map_index = {lead: i for i, lead in enumerate(map_leads)}
    duration_s = min(signal.shape[1] / rate, 10.0)
    if layout == "3x4":
        rows = [[(lead, c * COLUMN_S, (c + 1) * COLUMN_S) for c, lead in enumerate(names)] for names in LAYOUT]
        row_mm = ROW_MM
    else:  # 12x1: every lead over the whole 10 s, so every interval and the whole map are visible
        rows = [[(lead, 0.0, 10.0)] for names in zip(*LAYOUT, strict=True) for lead in names]
        row_mm = ROW_MM_12X1
    rows.append([(RHYTHM_LEAD, 0.0, 10.0)])
    width_mm = 4 * COLUMN_S * MM_PER_S
    height_mm = len(rows) * row_mm
    vmax = float(np.nanmax(anomaly_map)) if anomaly_map is not None and np.isfinite(anomaly_map).any() else 1.0
    figure = Figure(figsize=(width_mm / 25.4, height_mm / 25.4))
    ax = figure.add_axes((0, 0, 1, 1))
    _paper(ax, width_mm, height_mm)

    def draw(lead: str, t0: float, t1: float, row_y0: float) -> None:
        x0, baseline = t0 * MM_PER_S, row_y0 + row_mm / 2
        ax.text(x0 + 1.5, row_y0 + row_mm - 5, lead, fontsize=9, weight="bold", zorder=4)
        if lead not in index:
            ax.text(x0 + 8, baseline - 2, "not recorded", fontsize=6, color="#777", zorder=4)
            return
        i0, i1 = int(t0 * rate), int(min(t1, duration_s) * rate)
        trace = signal[index[lead], i0:i1]
        x = x0 + np.arange(trace.size) / rate * MM_PER_S
        if anomaly_map is not None and map_rate_hz and lead in map_index:
            values = anomaly_map[map_index[lead], int(t0 * map_rate_hz) : int(t1 * map_rate_hz)]
            _heat(ax, values, x0, x0 + values.size / map_rate_hz * MM_PER_S, row_y0 + 1, row_y0 + row_mm - 1, vmax)
        for interval in intervals:
            if interval["lead"] != lead:
                continue
            s, e = max(interval["start_ms"] / 1000.0, t0), min(interval["end_ms"] / 1000.0, t1)
            if e > s:
                box = Rectangle(
                    (x0 + (s - t0) * MM_PER_S, row_y0 + 1.5), (e - s) * MM_PER_S, row_mm - 3,
                    fill=False, edgecolor="#1f4fd1", linewidth=1.2, zorder=3,
                )  # fmt: skip
                ax.add_patch(box)
        ax.plot(x, baseline + trace * MM_PER_MV, color="black", linewidth=0.6, zorder=2)

    for row, panels in enumerate(rows):
        for lead, t0, t1 in panels:
            draw(lead, t0, t1, height_mm - (row + 1) * row_mm)
    # 1 mV calibration pulse (10 mm tall, 0.2 s wide) in the rhythm strip's margin.
    ax.plot([width_mm - 8, width_mm - 8, width_mm - 3, width_mm - 3], [5, 15, 15, 5], color="black", linewidth=0.8)
    if title:
        ax.text(width_mm - 2, height_mm - 4, title, fontsize=7, ha="right", zorder=4)
    ax.text(2, 1.5, "25 mm/s · 10 mm/mV", fontsize=6, zorder=4)
    return _svg(figure)


def rhythm_strip_svg(
    *, signal_uv: np.ndarray, leads: Sequence[str], sample_rate_hz: float, lead: str = RHYTHM_LEAD
) -> str:
    """Return one lead over 10 s on ECG paper (a previous ECG, for comparison); empty if the lead is missing."""
    if lead not in leads:
        return ""
    signal, rate = _decimate(np.asarray(signal_uv, dtype=np.float32)[list(leads).index(lead)] / 1000.0, sample_rate_hz)
    trace = signal[: int(10.0 * rate)]
    width_mm, height_mm = 4 * COLUMN_S * MM_PER_S, ROW_MM_12X1
    figure = Figure(figsize=(width_mm / 25.4, height_mm / 25.4))
    ax = figure.add_axes((0, 0, 1, 1))
    _paper(ax, width_mm, height_mm)
    ax.plot(np.arange(trace.size) / rate * MM_PER_S, height_mm / 2 + trace * MM_PER_MV, color="black", linewidth=0.6)
    ax.text(1.5, height_mm - 5, lead, fontsize=9, weight="bold")
    return _svg(figure)


def score_drift_svg(*, periods: Sequence[str], scores: Sequence[Sequence[float]], threshold: float | None) -> str:
    """Return box plots of the score per period (drift), with the operating point as a line."""
    figure = Figure(figsize=(8, 3))
    ax = figure.add_subplot(1, 1, 1)
    data = [list(s) for s in scores]
    if any(data):
        ax.boxplot([d or [np.nan] for d in data], tick_labels=list(periods), showfliers=False)
    if threshold is not None:
        ax.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label="operating point")
        ax.legend(loc="upper left", fontsize=7)
    ax.set_ylabel("detector score")
    ax.set_title("Score distribution per period (drift)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    figure.tight_layout()
    return _svg(figure)


def roc_svg(*, fpr: Sequence[float], tpr: Sequence[float], auroc: float | None) -> str:
    """Return the ROC curve on reviewed ECGs."""
    figure = Figure(figsize=(3.2, 3.2))
    ax = figure.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="#999", linewidth=0.8, linestyle=":")
    if len(fpr):
        ax.plot(fpr, tpr, color="#1f4fd1", linewidth=1.5)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(
        f"ROC on reviewed ECGs (AUROC {auroc:.3f})"
        if auroc is not None
        else "ROC: needs reviewed ECGs of both classes",
        fontsize=8,
    )
    figure.tight_layout()
    return _svg(figure)
