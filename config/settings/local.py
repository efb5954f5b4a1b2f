"""Local development: `make run` on embedded defaults (SQLite, filesystem broker),
with the local SMS, voice and email providers (nothing leaves the machine) and
readable logs on a terminal."""

import sys

from config.settings.base import *  # noqa: F403
from config.settings.base import env, log_format, logging_config, provider

DEBUG = env.bool("DEBUG", default=True)
if not SECRET_KEY:  # noqa: F405
    # Only reachable before `make run` wrote var/dev.env; never used in production.
    SECRET_KEY = "local-development-only-key-not-for-production-use-0123456789"  # noqa: S105

SMS_PROVIDER = provider("SMS_PROVIDER", "local")
VOICE_PROVIDER = provider("VOICE_PROVIDER", "local")
PORTAL_PROVIDER = provider("PORTAL_PROVIDER", "local", real="webhook")
vars().update(env.email_url("EMAIL_URL", default="localoutbox://"))

LOG_FORMAT = log_format("console" if sys.stderr.isatty() else "json")
# Celery's "task received" and "task succeeded" lines at DEBUG: the application's own
# lines (inbound_stored, outbound_sent, outbound_status, escalated) tell the story.
LOGGING = logging_config(
    level=LOG_LEVEL,  # noqa: F405
    log_format=LOG_FORMAT,
    every_task_at_debug=True,
)
