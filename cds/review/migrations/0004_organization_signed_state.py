"""Care teams belong to an organisation (tenant); reviews keep their signed revision and can be amended.

A signed review's ``signed_revision`` is backfilled with its latest ``sign`` revision. The new
status ``amended`` (changed after signing, awaiting a new signature) needs no data change;
earlier signatures have no recorded ``signature_meaning`` (blank).

Rows from before organisations join the ``default`` organisation (created by core 0001); new rows
must name theirs (the column is NOT NULL once backfilled).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def signed_revisions(apps: Any, schema_editor: Any) -> None:
    review_model, revision_model = apps.get_model("review", "Review"), apps.get_model("review", "ReviewRevision")
    latest_sign = revision_model.objects.filter(review=models.OuterRef("pk"), kind="sign").order_by("-number")
    review_model.objects.filter(signature_count__gt=0).update(
        signed_revision=models.Subquery(latest_sign.values("pk")[:1])
    )


def to_default_organization(apps: Any, schema_editor: Any) -> None:
    default = apps.get_model("core", "Organization").objects.get(slug="default")
    apps.get_model("review", "CareTeam").objects.update(organization=default)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_organization"),
        ("review", "0003_interpretation"),
    ]

    operations = [
        migrations.AddField(
            model_name="careteam",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="care_teams", to="core.organization"),
        ),
        migrations.RunPython(to_default_organization, migrations.RunPython.noop),
        migrations.AddField(
            model_name="review",
            name="signed_revision",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="review.reviewrevision",
            ),
        ),
        migrations.RunPython(signed_revisions, migrations.RunPython.noop),
        migrations.AddField(
            model_name="reviewrevision", name="signature_meaning", field=models.TextField(blank=True)
        ),
        migrations.AlterField(
            model_name="review",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("claimed", "Claimed"),
                    ("accepted", "Accepted"),
                    ("rejected", "Rejected"),
                    ("signed", "Signed"),
                    ("amended", "amended, awaiting signature"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="careteam",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="care_teams", to="core.organization"),
        ),
    ]
