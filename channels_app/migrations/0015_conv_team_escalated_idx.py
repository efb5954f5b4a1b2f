from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0014_interaction_occurred_idx"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(
                condition=models.Q(("escalated", True), ("status__in", ["open", "pending"])),
                fields=["team"],
                name="conv_team_escalated_idx",
            ),
        ),
    ]
