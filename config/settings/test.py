"""Test settings: PostgreSQL and Redis on loopback, as CI and production use.

DATABASE_URL and REDIS_URL override the defaults; each pytest-xdist worker gets
its own Redis key prefix so parallel workers never consume each other's tasks.
"""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/contactcenter")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CONTACTCENTER_READ_DEV_ENV", "false")
# Fixed keys for the test suite only (32 bytes each, base64).
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "test1:dGVzdC1maWVsZC1lbmNyeXB0aW9uLWtleS0wMDAwMDA=")
os.environ.setdefault("BLIND_INDEX_KEY", "dGVzdC1ibGluZC1pbmRleC1rZXktMDAwMDAwMDAwMDA=")
os.environ.setdefault("AUDIT_MAC_KEYS", "audit1:dGVzdC1hdWRpdC1tYWMta2V5LTAwMDAwMDAwMDAwMDA=")
os.environ.setdefault("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000")
os.environ.setdefault("TWILIO_AUTH_TOKEN", "test-twilio-auth-token-0000000000")
os.environ.setdefault("EMAIL_WEBHOOK_SECRET", "test-email-webhook-secret")

from config.settings.base import *  # noqa: F403
from config.settings.base import env

XDIST_WORKER = env.str("PYTEST_XDIST_WORKER", default="main")
# Redis keys, queues and channels of this run and process only: a later run reuses
# the test database's ids from 1, and must not find the counts (rate limits) an
# earlier run left under the same ids. A worker subprocess started by a test
# inherits its parent's prefix (CC_TEST_PREFIX).
_XDIST_RUN = env.str("PYTEST_XDIST_TESTRUNUID", default="")[:8]
TEST_RUN_PREFIX = env.str(
    "CC_TEST_PREFIX",
    default=(
        f"cctest-{os.getpid()}-"
        if XDIST_WORKER == "main"
        else f"cctest-{_XDIST_RUN or os.getppid()}-{XDIST_WORKER}-"
    ),
)

SECRET_KEY = "test-secret-key-only-for-the-test-suite-0123456789-abcdefghijklmnop"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
# Django empties tables with TRUNCATE after transactional tests; the audit trail's
# trigger refuses that unless the session opts in (see compliance migrations).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c compliance.allow_truncate=on"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = TEST_RUN_PREFIX  # noqa: F405
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "global_keyprefix": TEST_RUN_PREFIX,
}
CELERY_BEAT_SCHEDULE_FILENAME = "/dev/null"
# Redis pub/sub channels ignore the database number: each run listens on its own.
LIVE_CHANNEL = f"{TEST_RUN_PREFIX}live"
# Audit checkpoints of this test run; each test gets its own file (tests/conftest.py).
AUDIT_CHECKPOINT_SINK = f"file://{tempfile.gettempdir()}/{TEST_RUN_PREFIX}audit-checkpoints.jsonl"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
INSTALLED_APPS = [*INSTALLED_APPS, "tests.fieldtestapp"]  # noqa: F405
# Counters per source address live in Redis across tests (every test client calls
# from 127.0.0.1), so the address limits are out of reach here; the throttling
# tests set their own.
THROTTLE_RATES = {**THROTTLE_RATES, "survey": "100000/minute"}  # noqa: F405
THROTTLE_RATES["webhook_bad_signature"] = "100000/minute"
