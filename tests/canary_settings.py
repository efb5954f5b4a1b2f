"""Settings of the web, worker and beat processes of the canary test: the test
settings, logging everything (DEBUG, JSON) as production's formatter writes it, so
the test searches the most a deployment could ever log."""

from config.settings.base import logging_config
from config.settings.test import *  # noqa: F403

LOGGING = logging_config(level="DEBUG", log_format="json", every_task_at_debug=False)
