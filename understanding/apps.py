from django.apps import AppConfig


class UnderstandingConfig(AppConfig):
    name = "understanding"

    def ready(self):
        from understanding import receivers  # noqa: F401 - connects signal receivers
