"""Order one ECG's write-back messages (issue 13): ``ordering_key`` + ``sequence``.

Existing messages keep a blank key: they are delivered as before, without an order.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("writeback", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="ordering_key",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.AddField(
            model_name="outboxmessage", name="sequence", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AddConstraint(
            model_name="outboxmessage",
            constraint=models.UniqueConstraint(
                condition=models.Q(("ordering_key", ""), _negated=True),
                fields=("ordering_key", "sequence"),
                name="writeback_outbox_order_unique",
            ),
        ),
    ]
