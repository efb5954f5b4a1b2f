from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"

    def ready(self):
        from contactcenter.api import register_root_link
        from reporting import receivers  # noqa: F401 - connects signal receivers

        register_root_link("kpis", "report-kpis")
