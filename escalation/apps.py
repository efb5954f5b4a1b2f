from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"

    def ready(self):
        from contactcenter.api import register_root_link
        from escalation import receivers  # noqa: F401 - connects signal receivers

        register_root_link("escalations", "escalation-list")
        register_root_link("escalation_rules", "escalation-rule-list")
