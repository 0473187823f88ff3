"""A job may replay an event's first job (Job.replay_of); the one job per
event that polls make becomes a condition on the first job only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0012_trigger_polls"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="job",
            name="job_one_per_event",
        ),
        migrations.AddField(
            model_name="job",
            name="replay_of",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="replays",
                to="connections.job",
            ),
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(("replay_of__isnull", True)),
                fields=("event",),
                name="job_one_per_event",
            ),
        ),
    ]
