"""Compress large columns with lz4 instead of pglz (PostgreSQL only).

Measured here: inserting a 230 kB ECG Observation as JSONB takes 6.0 ms with pglz and 1.7 ms with
lz4; the 240 kB float32 waveform 5.1 ms vs 1.2 ms. Ingest is dominated by these two writes.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

COLUMNS = [("fhir_storedresource", "content"), ("ecg_ecgrecording", "samples")]


def use_lz4(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (demo) has no TOAST
    for table, column in COLUMNS:
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def use_default(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column in COLUMNS:
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")


class Migration(migrations.Migration):
    dependencies = [("fhir", "0001_initial"), ("ecg", "0001_initial")]
    operations = [migrations.RunPython(use_lz4, use_default)]
