import django.db.models.deletion
from django.db import migrations, models

# The single-column indexes Django made for the two foreign keys: the composite
# indexes interaction_conv_idx and interaction_timeline_idx begin with the same
# columns. Only the indexes go; AlterField alone would also drop and re-add the
# foreign-key constraints, and re-adding one validates every row of the table
# under a lock that stops the webhooks' inserts for as long.
INDEXES = [
    ("channels_app_interaction_conversation_id_6edb1648", "conversation_id"),
    ("channels_app_interaction_patient_id_df23720e", "patient_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0015_conv_team_escalated_idx"),
        ("patients", "0003_consent_history_and_language_source"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="interaction",
                    name="conversation",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="interactions",
                        to="channels_app.conversation",
                    ),
                ),
                migrations.AlterField(
                    model_name="interaction",
                    name="patient",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="interactions",
                        to="patients.patient",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f"DROP INDEX IF EXISTS {name}",
                    reverse_sql=f"CREATE INDEX {name} ON channels_app_interaction ({column})",
                )
                for name, column in INDEXES
            ],
        ),
    ]
