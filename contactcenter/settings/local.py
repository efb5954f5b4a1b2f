"""Local development: `make run` on embedded defaults (SQLite, filesystem broker)."""

from contactcenter.settings.base import *  # noqa: F403
from contactcenter.settings.base import env

DEBUG = env.bool("DEBUG", default=True)
if not SECRET_KEY:  # noqa: F405
    # Only reachable before `make run` wrote var/dev.env; never used in production.
    SECRET_KEY = "local-development-only-key-not-for-production-use-0123456789"  # noqa: S105
