from django.db import migrations

from reminders.defaults import DEFAULT_POLICY_NAME, DEFAULT_TEMPLATES


def create_default_policy(apps, schema_editor):
    ReminderPolicy = apps.get_model("reminders", "ReminderPolicy")
    ReminderTemplate = apps.get_model("reminders", "ReminderTemplate")
    if ReminderPolicy.objects.filter(is_default=True).exists():
        return
    policy = ReminderPolicy.objects.create(name=DEFAULT_POLICY_NAME, is_default=True)
    for channel, language, body in DEFAULT_TEMPLATES:
        ReminderTemplate.objects.create(
            policy=policy, channel=channel, language=language, body=body
        )


class Migration(migrations.Migration):
    dependencies = [("reminders", "0001_initial")]

    operations = [migrations.RunPython(create_default_policy, migrations.RunPython.noop)]
