"""Rate limits, counted in the cache (Redis in production): per API key and per
staff token on the API, per source address on the survey page and on webhook
requests whose signature fails. Validly signed provider traffic is never counted.
When the cache cannot be reached the request is let through and the failure
logged: a limit is a protection, not a dependency of the API.

Each limit is a sliding-window counter: a count per fixed window of the rate's
period, and the estimate for the sliding period ending now is this window's count
plus the previous window's weighted by how much of it the sliding period still
covers. In Redis that is one pipelined round trip per request (INCR, EXPIRE, GET)
and the count is atomic, so concurrent requests cannot both slip under the limit.
DRF's own throttle keeps every request's timestamp in one cache entry, read and
written back whole on each request: two round trips and up to a rate's worth of
timestamps unpickled and pickled, and two concurrent requests can both read the
old list, each write back one more, and so count once between them.

Rates are read from settings.THROTTLE_RATES on every check (environment
variables, see settings/base.py), as "N/second|minute|hour|day"."""

import time

import structlog
from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

logger = structlog.get_logger(__name__)

_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate):
    """A rate such as 600/minute as (requests, seconds): (600, 60)."""
    count, period = rate.split("/")
    return int(count), _PERIOD_SECONDS[period[0]]


class _SlidingWindowThrottle(BaseThrottle):
    cache_format = "throttle_%(scope)s_%(ident)s"
    scope = None
    timer = time.time

    @property
    def cache(self):
        # The backend itself, not django.core.cache.cache (a proxy to it): _count
        # looks at its class to take the pipelined path on Redis.
        return caches["default"]

    def get_cache_key(self, request, view):
        """The counter's key for this request, or None when it is not counted."""
        raise NotImplementedError

    def allow_request(self, request, view):
        self._wait = None
        rate = settings.THROTTLE_RATES.get(self.scope)
        key = self.get_cache_key(request, view) if rate else None
        if key is None:
            return True
        limit, period = parse_rate(rate)
        now = self.timer()
        elapsed = now % period
        current_key, previous_key = self._window_keys(key, period, now)
        try:
            current, previous = self._count(current_key, previous_key, period)
            estimate = previous * (period - elapsed) / period + current
            if estimate <= limit:
                return True
            # A refused request does not count, as with DRF's throttle: a client
            # that waits as long as Retry-After says gets through.
            self.cache.decr(current_key)
        except Exception as exc:
            logger.warning("throttle_unavailable", scope=self.scope, error=type(exc).__name__)
            return True
        self._wait = self._wait_seconds(limit, period, elapsed, current - 1, previous)
        return False

    def reset(self, ident):
        """Forget an ident's count: for a test that must count its own requests
        only, or an operator lifting a limit early from `manage.py shell`."""
        rate = settings.THROTTLE_RATES.get(self.scope)
        if rate:
            key = self.cache_format % {"scope": self.scope, "ident": ident}
            self.cache.delete_many(self._window_keys(key, parse_rate(rate)[1], self.timer()))

    @staticmethod
    def _window_keys(key, period, now):
        """(this window's counter, the previous window's)."""
        window = int(now // period)
        return f"{key}:{window}", f"{key}:{window - 1}"

    def _count(self, current_key, previous_key, period):
        """(this window's count with this request, the previous window's count)."""
        # Kept for two periods: the next window reads this one as its previous.
        timeout = 2 * period
        if isinstance(self.cache, RedisCache):
            current_key = self.cache.make_and_validate_key(current_key)
            previous_key = self.cache.make_and_validate_key(previous_key)
            client = self.cache._cache.get_client(current_key, write=True)
            pipe = client.pipeline(transaction=False)
            pipe.incr(current_key)
            pipe.expire(current_key, timeout)
            pipe.get(previous_key)
            current, _, previous = pipe.execute()
            return current, int(previous or 0)
        # Other caches (the file cache of `make run`): the same counts, in three
        # operations that are not atomic together; a development server's limits.
        self.cache.add(current_key, 0, timeout)
        return self.cache.incr(current_key), int(self.cache.get(previous_key) or 0)

    @staticmethod
    def _wait_seconds(limit, period, elapsed, current, previous):
        """Seconds until a request would be allowed, if no other came meanwhile."""
        if current + 1 <= limit and previous:
            # The previous window's weight has to fall far enough in this one.
            return max(0.0, period * (1 - (limit - current - 1) / previous) - elapsed)
        # Not before this window ends, then until its own weight falls enough.
        return (period - elapsed) + period * max(0.0, 1 - (limit - 1) / max(current, 1))

    def wait(self):
        return self._wait


class ApiKeyThrottle(_SlidingWindowThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        if not getattr(user, "is_api_client", False):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.client.pk}


class StaffTokenThrottle(_SlidingWindowThrottle):
    scope = "staff_token"

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        token = getattr(request, "auth", None)
        if not getattr(user, "is_authenticated", False) or getattr(user, "is_api_client", False):
            return None
        if token is None or getattr(token, "pk", None) is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}


class AddressThrottle(_SlidingWindowThrottle):
    """Per source address, for plain Django views (no DRF request)."""

    def __init__(self, scope):
        self.scope = scope
        super().__init__()

    def get_cache_key(self, request, view):
        address = get_client_ip_address(request) or "unknown"
        return self.cache_format % {"scope": self.scope, "ident": address}


def address_throttled(request, scope):
    """Count this request against its address's limit in `scope`; the 429 to answer
    when the limit is passed, else None."""
    # Imported here: DRF imports this module while contactcenter.errors imports DRF.
    from contactcenter.errors import error_response

    throttle = AddressThrottle(scope)
    if throttle.allow_request(request, None):
        return None
    wait = throttle.wait()
    response = error_response(
        request,
        status=429,
        code="throttled",
        message="Too many requests from this address; try again later.",
        details={},
    )
    response["Retry-After"] = str(max(1, round(wait or 1)))
    return response
