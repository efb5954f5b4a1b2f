from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self):
        from compliance import checks, receivers  # noqa: F401 - registers checks and receivers
