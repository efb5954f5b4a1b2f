"""System checks: production delivers every message for real.

One list of the development-only ways of "sending": email backends that keep mail
on this machine (in a log, a file, memory, the local outbox) or drop it, and the
local SMS and voice providers. Production settings turn DEVELOPMENT_DELIVERY_ALLOWED
off, and any of them is then an error: `manage.py check` and `migrate` (the
deployment's first step) refuse to go on.
"""

from django.conf import settings
from django.core import checks

DEVELOPMENT_ONLY_EMAIL_BACKENDS = frozenset(
    {
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "channels_app.local_outbox.EmailBackend",
    }
)
# Settings naming a provider, and the values that only record what would be sent.
DEVELOPMENT_ONLY_PROVIDERS = {
    "SMS_PROVIDER": frozenset({"local"}),
    "VOICE_PROVIDER": frozenset({"local"}),
    "PORTAL_PROVIDER": frozenset({"local"}),
}


@checks.register(checks.Tags.security)
def development_only_delivery(app_configs, **kwargs):
    if settings.DEVELOPMENT_DELIVERY_ALLOWED:
        return []
    errors = []
    if settings.EMAIL_BACKEND in DEVELOPMENT_ONLY_EMAIL_BACKENDS:
        errors.append(
            checks.Error(
                f"EMAIL_BACKEND {settings.EMAIL_BACKEND} does not deliver mail: it keeps "
                "messages (with their addresses and bodies) on this machine or drops them.",
                hint="Set EMAIL_URL to your mail server, e.g. smtp+tls://user:pw@host:587.",
                id="contactcenter.E001",
            )
        )
    for name, local_values in DEVELOPMENT_ONLY_PROVIDERS.items():
        if getattr(settings, name) in local_values:
            errors.append(
                checks.Error(
                    f"{name}={getattr(settings, name)} only records messages in the local "
                    "outbox; nothing reaches the patient.",
                    hint=f"Set {name}=twilio and the Twilio credentials.",
                    id="contactcenter.E002",
                )
            )
    return errors
