from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        from channels_app import (
            accounts,  # noqa: F401 - clears the kept channel accounts on a change
            receivers,  # noqa: F401 - connects signal receivers
            retention,
        )

        retention.register()
