from django.conf import settings
from django.core import checks

from compliance import retention


@checks.register()
def check_retention_kinds(app_configs, **kwargs):
    """A misspelled kind in RETENTION_DAYS would be kept at its default without a
    word; the apps have registered their kinds by the time checks run."""
    registered = {entry.kind for entry in retention.registered_kinds()}
    return [
        checks.Error(
            f"RETENTION_DAYS names {kind!r}, which no app registers for retention.",
            hint=f"Registered kinds: {', '.join(sorted(registered)) or 'none'}.",
            id="compliance.E001",
        )
        for kind in sorted(set(settings.RETENTION_DAYS) - registered)
    ]
