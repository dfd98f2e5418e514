"""Organisations (tenants), plus the ``default`` one that data and API clients from before them join."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def create_default(apps: Any, schema_editor: Any) -> None:
    organization = apps.get_model("core", "Organization")
    organization.objects.get_or_create(
        slug="default", defaults={"name": "Default organisation (data and clients from before organisations)"}
    )


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Organization",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "slug",
                    models.SlugField(help_text="Short stable name, e.g. 'st-marys'.", max_length=64, unique=True),
                ),
                ("name", models.CharField(max_length=200)),
            ],
            options={"abstract": False},
        ),
        migrations.RunPython(create_default, migrations.RunPython.noop),
    ]
