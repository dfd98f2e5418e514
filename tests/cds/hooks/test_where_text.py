"""The card's "Where": one entry per localized box, named by the finding that explains it."""

from __future__ import annotations

from cds.hooks.services import where_text


def test_it_writes_one_entry_per_box_with_its_finding_and_leads() -> None:
    rows = [
        {"lead": lead, "start_ms": 2000.0, "end_ms": 2400.0, "score": 1.0, "finding": "PVC", "box": 1}
        for lead in ("I", "II", "V1")
    ] + [{"lead": "V2", "start_ms": 5000.0, "end_ms": 5300.0, "score": 1.0, "finding": "model only", "box": 2}]
    assert where_text(rows) == "PVC I/II/V1 2.0–2.4 s, model only V2 5.0–5.3 s"


def test_rows_without_a_box_are_listed_one_lead_at_a_time_as_before() -> None:
    rows = [
        {"lead": "V2", "start_ms": 100.0, "end_ms": 300.0, "score": 1.0},
        {"lead": "V3", "start_ms": 100.0, "end_ms": 300.0, "score": 1.0},
    ]
    assert where_text(rows) == "V2 0.1–0.3 s, V3 0.1–0.3 s"
