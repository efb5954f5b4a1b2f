from django.apps import AppConfig


class FieldTestAppConfig(AppConfig):
    """Models that exist only for the tests of contactcenter.fields and key rotation."""

    name = "tests.fieldtestapp"
    label = "fieldtestapp"
    default_auto_field = "django.db.models.BigAutoField"
