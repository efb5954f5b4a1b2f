from django.apps import AppConfig


class ContactcenterConfig(AppConfig):
    name = "contactcenter"
    verbose_name = "Contact center"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from contactcenter import checks  # noqa: F401 - registers the system checks
        from contactcenter.connections import connect_request_signals
        from contactcenter.crypto import validate_key_settings
        from contactcenter.logging import configure_structlog
        from contactcenter.middleware import stamp_sign_in

        user_logged_in.connect(stamp_sign_in, dispatch_uid="contactcenter.stamp_sign_in")
        connect_request_signals()
        configure_structlog()
        validate_key_settings()
