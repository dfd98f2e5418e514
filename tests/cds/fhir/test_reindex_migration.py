"""Migration fhir 0004 backfills the search rows issue 15 added, for resources stored before it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("fhir", "0003_organization")]
AFTER = [("fhir", "0004_reindex_text_and_strings")]


def _executor() -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor


@pytest.mark.django_db(transaction=True)
def test_it_indexes_names_and_code_text_of_existing_resources() -> None:
    try:
        _executor().migrate(BEFORE)
        old = _executor().loader.project_state(BEFORE).apps
        organization = old.get_model("core", "Organization").objects.create(slug="m", name="M")
        stored = old.get_model("fhir", "StoredResource")
        content = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Curie", "given": ["Marie"]}]}
        patient = stored.objects.create(
            resource_type="Patient",
            logical_id="p1",
            last_updated=timezone.now(),
            content=content,
            organization=organization,
        )
        stored.objects.create(  # a hand-made row without an id is skipped, not a crash
            resource_type="Patient", logical_id="p2", last_updated=timezone.now(), content={}, organization=organization
        )
        _executor().migrate(AFTER)
        new = _executor().loader.project_state(AFTER).apps
        rows = new.get_model("fhir", "SearchIndexEntry").objects.filter(resource_id=patient.pk)
        assert sorted(rows.values_list("name", "value")) == [
            ("family", "Curie"),
            ("given", "Marie"),
            ("name", "Curie"),
            ("name", "Marie"),
        ]
    finally:  # leave the schema as the other tests expect it
        executor = _executor()
        executor.migrate(executor.loader.graph.leaf_nodes())
