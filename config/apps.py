from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The wiring on top of every app: settings, URLs, the Celery app, the API root,
    health checks and the demo data. Installed only for its management commands
    (load_demo, simulate_inbound), which reach into several apps; it has no models."""

    name = "config"
    label = "config"
    verbose_name = "Project wiring"
