from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"

    def ready(self):
        from escalation import receivers  # noqa: F401 - connects signal receivers
