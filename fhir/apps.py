from pathlib import Path

from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "fhir"
    verbose_name = "FHIR interface"
    default_auto_field = "django.db.models.BigAutoField"
    # The package's path also holds fhir.resources' directory (see __init__.py);
    # the app's own files are here.
    path = str(Path(__file__).resolve().parent)

    def ready(self):
        from fhir import receivers  # noqa: F401 - connects the signal receivers
