"""The organisation migrations: data and API clients from before organisations join ``default``."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [
    ("core", None),
    ("fhir", "0002_lz4_toast_compression"),
    ("ecg", "0001_initial"),
    ("oauth", "0002_smart_backend_services"),
    ("review", "0003_interpretation"),
]
AFTER = [
    ("core", "0001_organization"),
    ("fhir", "0003_organization"),
    ("ecg", "0002_organization"),
    ("oauth", "0003_organization"),
    ("review", "0004_organization_signed_state"),
]


@pytest.mark.django_db(transaction=True)
def test_it_puts_existing_rows_in_the_default_organization() -> None:
    executor = MigrationExecutor(connection)
    try:
        _migrate_and_check(executor)
    finally:  # leave the schema as the other tests expect it
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def _migrate_and_check(executor: MigrationExecutor) -> None:
    executor.migrate(BEFORE)
    old = executor.loader.project_state([node for node in BEFORE if node[1] is not None]).apps
    resource = old.get_model("fhir", "StoredResource").objects.create(
        resource_type="Patient", logical_id="p1", last_updated=timezone.now(), content={}, source="legacy"
    )
    old.get_model("ecg", "Patient").objects.create(resource=resource, logical_id="p1")
    old.get_model("oauth", "ApiClient").objects.create(
        name="legacy", client_id="c1", secret_hash="!", scopes="system/*.rs"
    )
    old.get_model("review", "CareTeam").objects.create(name="legacy team")
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        default = new.get_model("core", "Organization").objects.get(slug="default")
        for app, model in (
            ("fhir", "StoredResource"),
            ("ecg", "Patient"),
            ("oauth", "ApiClient"),
            ("review", "CareTeam"),
        ):
            assert list(new.get_model(app, model).objects.values_list("organization_id", flat=True)) == [default.pk]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
