"""The practice's active channel accounts, kept in each process.

Every webhook looks up the account it was sent to, and a practice has a handful of
numbers, mailboxes and portal endpoints that change a few times a year, so each
process keeps them all (with their teams) instead of asking the database on every
request. A save or delete of an account clears this process's copy at once (a
signal) and the other processes' within `CHECK_SECONDS`: after the change commits
it writes a new generation into the cache (Redis), which each process reads at
most once per `CHECK_SECONDS`. Without the cache (Redis down) a copy is kept at
most `MAX_AGE_SECONDS`; webhooks go on working either way.
"""

import secrets
import threading
import time

import structlog
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from channels_app.models import ChannelAccount

logger = structlog.stdlib.get_logger(__name__)

GENERATION_KEY = "channel_accounts:generation"
CHECK_SECONDS = 1.0
MAX_AGE_SECONDS = 30.0

_UNAVAILABLE = object()
_lock = threading.Lock()
_copy = {"accounts": None, "loaded": 0.0, "checked": 0.0, "generation": None}


def _shared_generation():
    try:
        return cache.get(GENERATION_KEY)
    except Exception as exc:  # the cache is an optimisation here, never a dependency
        logger.warning("channel_accounts_generation_unavailable", error=type(exc).__name__)
        return _UNAVAILABLE


def active_accounts():
    """Every active channel account with its team, ordered by id (the order the
    lookups' `.first()` used)."""
    now = time.monotonic()
    with _lock:
        accounts = _copy["accounts"]
        fresh = accounts is not None and now - _copy["loaded"] < MAX_AGE_SECONDS
        if fresh and now - _copy["checked"] < CHECK_SECONDS:
            return accounts
    generation = _shared_generation()
    with _lock:
        if fresh and (generation is _UNAVAILABLE or generation == _copy["generation"]):
            _copy["checked"] = now
            return accounts
    # The generation is read before the rows: a change committed in between is
    # loaded now and makes the next check reload once more, never the reverse.
    accounts = tuple(
        ChannelAccount.objects.select_related("team").filter(active=True).order_by("pk")
    )
    with _lock:
        _copy.update(
            accounts=accounts,
            loaded=now,
            checked=now,
            generation=None if generation is _UNAVAILABLE else generation,
        )
    return accounts


def account_for(*, kind, address):
    """The active account of this kind at this (normalised) address, or None."""
    for account in active_accounts():
        if account.kind == kind and account.address == address:
            return account
    return None


def accounts_of_kind(kind):
    return [account for account in active_accounts() if account.kind == kind]


def forget():
    """Drop this process's copy (tests call it between tests, whose rows roll back)."""
    with _lock:
        _copy["accounts"] = None


def _bump_generation():
    try:
        cache.set(GENERATION_KEY, secrets.token_hex(8), None)
    except Exception as exc:
        logger.warning("channel_accounts_generation_unavailable", error=type(exc).__name__)


@receiver(post_save, sender=ChannelAccount)
@receiver(post_delete, sender=ChannelAccount)
def _account_changed(sender, **kwargs):
    forget()
    transaction.on_commit(_bump_generation)
