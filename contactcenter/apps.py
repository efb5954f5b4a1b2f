from django.apps import AppConfig


class ContactcenterConfig(AppConfig):
    name = "contactcenter"
    verbose_name = "Contact center"

    def ready(self):
        from contactcenter import checks  # noqa: F401 - registers the system checks
        from contactcenter.crypto import validate_key_settings
        from contactcenter.logging import configure_structlog

        configure_structlog()
        validate_key_settings()
