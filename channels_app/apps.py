from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        from channels_app import (
            receivers,  # noqa: F401 - connects signal receivers
            retention,
        )

        retention.register()
