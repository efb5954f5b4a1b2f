"""Production: every secret and address comes from the environment, HTTPS only."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env, required

SECRET_KEY = required("SECRET_KEY")
if len(SECRET_KEY) < 50:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long.")
required("DATABASE_URL")
required("ALLOWED_HOSTS")
required("REDIS_URL")
required("FIELD_ENCRYPTION_KEYS")
required("BLIND_INDEX_KEY")
required("AUDIT_MAC_KEYS")
DEBUG = False
# Email, SMS and calls must reach patients: no console mail, no local outbox.
DEVELOPMENT_DELIVERY_ALLOWED = False
MFA_REQUIRED = env.bool("MFA_REQUIRED", default=True)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Load balancers probe health over plain HTTP inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Static files (admin, API docs) served by the app itself behind the proxy.
MIDDLEWARE.insert(  # noqa: F405
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,  # noqa: F405
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
}
