"""The rollup's additive figures move from one JSON object to a column each, and
its samples from `integer[]` (JSON text on SQLite) to packed bytes: a year's
report sums columns instead of casting JSON values, and unpacks bytes instead of
parsing arrays. Stored rollups are converted, not dropped: the rows they came
from may be gone (the retention purge), so they could not all be recomputed."""

from django.db import migrations, models

import reporting.fields

# The additive figures as they are at this migration (frozen here on purpose).
KEYS = (
    "calls_offered",
    "calls_answered",
    "calls_abandoned",
    "calls_short_abandoned",
    "calls_answered_wait_seconds",
    "calls_answered_within_target",
    "conversations_opened",
    "conversations_resolved",
    "conversations_fcr",
    "conversations_escalated",
    "conversations_reopened",
    "sentiment_conversations",
    "sentiment_delta_millionths",
    "surveys_sent",
    "csat_responses",
    "csat_score_sum",
    "csat_satisfied",
    "ces_responses",
    "ces_score_sum",
)
SAMPLES = (
    ("first_response_samples", "first_response_packed"),
    ("resolution_samples", "resolution_packed"),
)
BATCH = 500


def _convert(apps, values):
    # One UPDATE per row: bulk_update's CASE expressions over 21 columns cost
    # more to build than these cost to run.
    rollup = apps.get_model("reporting", "KpiDailyRollup")
    for row in rollup.objects.order_by("pk").iterator(chunk_size=BATCH):
        rollup.objects.filter(pk=row.pk).update(**values(row))


def to_columns(apps, schema_editor):
    def values(row):
        metrics = row.metrics or {}
        return {
            **{key: int(metrics.get(key) or 0) for key in KEYS},
            **{new: [int(value) for value in getattr(row, old) or ()] for old, new in SAMPLES},
        }

    _convert(apps, values)


def to_json(apps, schema_editor):
    def values(row):
        return {
            "metrics": {key: getattr(row, key) for key in KEYS},
            **{old: list(getattr(row, new) or ()) for old, new in SAMPLES},
        }

    _convert(apps, values)


class Migration(migrations.Migration):
    dependencies = [
        ("reporting", "0001_initial"),
    ]

    operations = [
        *(
            migrations.AddField(
                model_name="kpidailyrollup", name=key, field=models.BigIntegerField(default=0)
            )
            for key in KEYS
        ),
        *(
            migrations.AddField(
                model_name="kpidailyrollup",
                name=new,
                field=reporting.fields.PackedIntegersField(default=list),
            )
            for _old, new in SAMPLES
        ),
        migrations.RunPython(to_columns, to_json),
        migrations.RemoveField(model_name="kpidailyrollup", name="metrics"),
        *(migrations.RemoveField(model_name="kpidailyrollup", name=old) for old, _new in SAMPLES),
        *(
            migrations.RenameField(model_name="kpidailyrollup", old_name=new, new_name=old)
            for old, new in SAMPLES
        ),
    ]
