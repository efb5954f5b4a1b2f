"""Live events: what changed in which conversation, published after the change
commits, for the staff workspace's open pages (and any other listener).

An event is a small dict of ids and codes, never PHI: the page that receives it
fetches what it shows through the same audited views as any other read.

    {"kind": "message", "conversation": "<uuid>", "team": 3, "at": 1733500000.1}

Kinds: `message` (an interaction was added), `delivery` (a delivery state moved),
`conversation` (status, assignee, priority, labels, team, escalation), and the
ephemeral `presence` and `typing` (who has a conversation open, who is writing;
these also carry the staff user's id and username).

Two brokers, picked by settings: Redis pub/sub when REDIS_URL is set (every web
process subscribes; the worker publishes), and for the embedded `make run`
default without Redis a file under var/live/ that publishers append to and
subscribers follow. Both are read by `subscribe_sync` (WSGI: runserver and the
test server stream from a thread) and `subscribe_async` (ASGI in production).
"""

import asyncio
import json
import logging
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

MESSAGE = "message"
DELIVERY = "delivery"
CONVERSATION = "conversation"
PRESENCE = "presence"
TYPING = "typing"
KINDS = (MESSAGE, DELIVERY, CONVERSATION, PRESENCE, TYPING)

# How often a subscriber wakes when nothing arrives: the file broker's follow
# interval, and the granularity of the keep-alive and of noticing a closed page.
_WAKE_SECONDS = 0.2
# The file broker starts a new file past this size; followers notice it shrank.
_FILE_LIMIT_BYTES = 1024 * 1024


def _event(*, kind, conversation_id, team_id, **ids):
    if kind not in KINDS:
        raise ValueError(f"Unknown live event kind {kind!r}")
    return {
        "kind": kind,
        "conversation": str(conversation_id),
        "team": team_id,
        "at": time.time(),
        **{key: value for key, value in ids.items() if value is not None},
    }


def publish_on_commit(*, kind, conversation_id, team_id, **ids):
    """Publish once the surrounding transaction commits (at once outside one);
    a rolled-back change publishes nothing. A broker that is down loses the event
    and is logged: the pages catch up on their next refresh or reconnect."""
    event = _event(kind=kind, conversation_id=conversation_id, team_id=team_id, **ids)
    transaction.on_commit(lambda: publish_now(event), robust=True)


def publish_ephemeral(*, kind, conversation_id, team_id, user, left=None):
    """Presence and typing: nothing is stored, so nothing waits for a commit.
    `left` marks a page that closed, so teammates drop it at once."""
    publish_now(
        _event(
            kind=kind,
            conversation_id=conversation_id,
            team_id=team_id,
            user=user.pk,
            username=user.get_username(),
            left=left,
        )
    )


def publish_now(event):
    try:
        broker().publish(json.dumps(event, separators=(",", ":")))
    except Exception:
        logger.warning("live event not published", exc_info=True)


class RedisBroker:
    def __init__(self, url, channel):
        self.url = url
        self.channel = channel
        self._client = None

    def publish(self, payload):
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=2
            )
        self._client.publish(self.channel, payload)

    def subscribe_sync(self, *, stop):
        """Yields each payload (str) or None at every wake without one."""
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        try:
            while not stop():
                message = pubsub.get_message(timeout=_WAKE_SECONDS)
                yield message["data"].decode() if message else None
        finally:
            pubsub.close()
            client.close()

    async def subscribe_async(self):
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        try:
            while True:
                message = await pubsub.get_message(timeout=_WAKE_SECONDS)
                yield message["data"].decode() if message else None
        finally:
            await pubsub.aclose()
            await client.aclose()


class FileBroker:
    """One JSON line per event appended to a file (appends of a short line are
    atomic on POSIX); subscribers follow it from its end, as `tail -f` does."""

    def __init__(self, path):
        self.path = Path(path)

    def publish(self, payload):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > _FILE_LIMIT_BYTES:
            self.path.write_text("")
        with self.path.open("a", encoding="utf-8") as file:
            file.write(payload + "\n")

    def _read_new(self, position):
        """(lines added since position, new position)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return [], 0
        if size < position:
            position = 0
        if size == position:
            return [], position
        with self.path.open("r", encoding="utf-8") as file:
            file.seek(position)
            chunk = file.read()
        complete, _, _partial = chunk.rpartition("\n")
        if not complete and not chunk.endswith("\n"):
            return [], position
        return complete.split("\n"), position + len(complete.encode()) + 1

    def _start(self):
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def subscribe_sync(self, *, stop):
        position = self._start()
        while not stop():
            lines, position = self._read_new(position)
            if lines:
                yield from lines
            else:
                time.sleep(_WAKE_SECONDS)
                yield None

    async def subscribe_async(self):
        position = self._start()
        while True:
            lines, position = self._read_new(position)
            if lines:
                for line in lines:
                    yield line
            else:
                await asyncio.sleep(_WAKE_SECONDS)
                yield None


_broker = None


def broker():
    global _broker
    wanted = (settings.LIVE_REDIS_URL, settings.LIVE_CHANNEL, settings.LIVE_FILE)
    if _broker is None or _broker[0] != wanted:
        instance = (
            RedisBroker(settings.LIVE_REDIS_URL, settings.LIVE_CHANNEL)
            if settings.LIVE_REDIS_URL
            else FileBroker(settings.LIVE_FILE)
        )
        _broker = (wanted, instance)
    return _broker[1]
