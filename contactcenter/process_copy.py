"""Small, rarely changed configuration kept in each process instead of read from the
database on every webhook or inbound message: the practice's channel accounts, the
active escalation rules, the SLA policies, whether any FHIR subscription is active.

Each is a handful of rows that an administrator changes a few times a year, read for
every message; at thousands of messages a second each read is a round trip the
request or the task waits on, and a statement's worth of CPU on both sides.

A change made through the ORM (a save or a delete of a watched model, or a service
that calls `changed()`) clears this process's copy at once and, after it commits,
writes a new generation into the cache (Redis); every other process reads that
generation at most once per `check_seconds` and reloads when it moved. So a change
reaches every process within `check_seconds` (one second): a message handled in
that second may still be handled as it was a moment before the change. Without the
cache (Redis down) a copy is kept at most `max_age_seconds`; the work goes on either
way, and a change that bypasses the ORM's signals (a queryset `update()`) is seen
within that time too.
"""

import secrets
import threading
import time
import weakref

import structlog
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

logger = structlog.stdlib.get_logger(__name__)

_UNAVAILABLE = object()
_every_copy = weakref.WeakSet()


class ProcessCopy:
    """`load()`'s result, kept in this process (shared by its threads) and reloaded
    when another process's change moves the shared generation. `load` must return
    something no caller mutates (a tuple of rows, a frozenset, a mapping proxy)."""

    def __init__(self, name, load, *, check_seconds=1.0, max_age_seconds=30.0, clock=None):
        self.name = name
        self.generation_key = f"process_copy:{name}:generation"
        self._load = load
        self.check_seconds = check_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._value = None
        self._loaded = self._checked = 0.0
        self._generation = None
        _every_copy.add(self)

    def get(self):
        now = self._clock()
        with self._lock:
            value = self._value
            fresh = value is not None and now - self._loaded < self.max_age_seconds
            if fresh and now - self._checked < self.check_seconds:
                return value
        generation = self._shared_generation()
        with self._lock:
            if fresh and (generation is _UNAVAILABLE or generation == self._generation):
                self._checked = now
                return value
        # The generation is read before the rows: a change committed in between is
        # loaded now and makes the next check reload once more, never the reverse.
        value = self._load()
        with self._lock:
            self._value = value
            self._loaded = self._checked = now
            self._generation = None if generation is _UNAVAILABLE else generation
        return value

    def forget(self):
        """Drop this process's copy (tests call it between tests, whose rows roll back)."""
        with self._lock:
            self._value = None

    def changed(self):
        """A watched row changed in this transaction: this process reloads at its next
        read, the others once the change has committed."""
        self.forget()
        transaction.on_commit(self._bump_generation)

    def watch(self, *models):
        """changed() on every save and delete of these models."""
        for model in models:
            for event, signal in (("save", post_save), ("delete", post_delete)):
                signal.connect(
                    self._on_change,
                    sender=model,
                    weak=False,
                    dispatch_uid=f"process_copy:{self.name}:{model._meta.label}:{event}",
                )
        return self

    def _on_change(self, sender, **kwargs):
        self.changed()

    def _shared_generation(self):
        try:
            return cache.get(self.generation_key)
        except Exception as exc:  # the cache is an optimisation here, never a dependency
            logger.warning(
                "process_copy_generation_unavailable", copy=self.name, error=type(exc).__name__
            )
            return _UNAVAILABLE

    def _bump_generation(self):
        try:
            cache.set(self.generation_key, secrets.token_hex(8), None)
        except Exception as exc:
            logger.warning(
                "process_copy_generation_unavailable", copy=self.name, error=type(exc).__name__
            )


def forget_all():
    """Every copy in this process dropped (tests, between tests: their rows roll back)."""
    for copy in list(_every_copy):
        copy.forget()
