from django.apps import AppConfig


class RemindersConfig(AppConfig):
    name = "reminders"

    def ready(self):
        from reminders import receivers  # noqa: F401 - connects signal receivers
