"""Stored inbound messages handed to the worker in batches.

A Celery task per message cost the worker more than the message's own processing:
the broker's reserve and late ack, the parent's hand-off to a child and back, the
task's signals (bench/worker_drain.py: 240-264 messages/s as a task each, against
346-595/s for the same task body taking ids from a list, 4 processes on 2 cores).
So on a Redis broker a stored message's id goes onto a list, and at most
INBOUND_DRAINERS drain tasks at a time take ids off it, a batch at a time, and run
the inbound processing on each (channels_app.tasks.inbound_drain). A message that
arrives while every drainer is busy costs the worker no task at all; one that
arrives when a drainer slot is free starts a drain task, as a message started its
own task before, so a quiet line waits no longer than it did.

The database stays the record of what is left to do, as it was with a task per
message: an id this list loses (Redis down at commit time, a worker killed with a
batch in hand) belongs to a row not marked processed, and the sweeper hands it over
again after SWEEPER_GRACE_SECONDS. An id handed over twice is processed once (the
task skips a row already marked, and escalation's claim is a unique row).

Each drainer holds a slot: a key set with an expiry, taken by the push that starts
its task and given back by the take that finds the list empty, in the same Lua
script as the pop. A push and a take are each atomic in Redis, so a message is
either taken by a running drainer or pushed after its slot was given back, when
the push takes a slot and starts a task: no message waits for the sweeper unless
Redis loses it. A drainer that dies keeps its slot until the expiry; a slot taken
again after an expiry while its first drainer still runs means one more drainer for
a while, which is harmless.

On another broker (`make run`'s filesystem broker), each message is a task of its
own, as before.
"""

from functools import partial
from typing import NamedTuple

import structlog
from django.conf import settings
from django.db import transaction

from contactcenter.queueing import publish

logger = structlog.stdlib.get_logger(__name__)

# Ids taken off the list at a time: one round trip to Redis for this many messages,
# and the most a drainer killed mid-batch leaves to the sweeper.
BATCH = 10
# A drainer's slot outlives a batch's processing by far; it expires only when the
# drainer died, and is renewed at every take.
SLOT_SECONDS = 60
# How long one drain task runs before it queues its successor (keeping its slot) and
# lets the worker's process take other queues' tasks in between.
DRAIN_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 2

# KEYS: the list, then every slot. ARGV: the slot expiry, then the ids.
_PUSH = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
for slot = 2, #KEYS do
  if redis.call('SET', KEYS[slot], '1', 'NX', 'EX', ARGV[1]) then
    return slot - 1
  end
end
return 0
"""
# KEYS: the list, this drainer's slot. ARGV: the batch, the slot expiry.
_TAKE = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if ids then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  return ids
end
redis.call('DEL', KEYS[2])
return {}
"""


class _Redis(NamedTuple):
    connection: object
    push: object
    take: object


_clients = {}


def _broker():
    # Celery's own broker settings, which a test may point at a Redis of its own.
    from celery import current_app

    return current_app.conf


def uses_list():
    return _broker().broker_url.startswith(("redis://", "rediss://"))


def _key(name):
    prefix = (_broker().broker_transport_options or {}).get("global_keyprefix", "")
    return f"{prefix}inbound:{name}"


def list_key():
    return _key("pending")


def slot_key(slot):
    return _key(f"drainer:{slot}")


def client():
    """This process's client of the broker's Redis. redis-py's pool opens its
    connections again after a fork, so each worker child gets its own."""
    url = _broker().broker_url
    known = _clients.get(url)
    if known is None:
        import redis

        connection = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        known = _clients[url] = _Redis(
            connection=connection,
            push=connection.register_script(_PUSH),
            take=connection.register_script(_TAKE),
        )
    return known


def hand_over(interaction_ids):
    """Give stored inbound messages to the worker: onto the list (and a drain task
    started when a drainer slot is free), or a task each on another broker. Never
    raises: what is not handed over is left to the sweeper."""
    from channels_app import tasks

    ids = [str(interaction_id) for interaction_id in interaction_ids]
    if not ids:
        return
    if not uses_list():
        for interaction_id in ids:
            publish(tasks.inbound_process, [interaction_id])
        return
    slots = [slot_key(slot) for slot in range(1, settings.INBOUND_DRAINERS + 1)]
    try:
        slot = client().push(keys=[list_key(), *slots], args=[SLOT_SECONDS, *ids])
    except Exception as exc:
        logger.warning(
            "enqueue_failed", task=tasks.inbound_drain.name, error=exc.__class__.__name__
        )
        return
    if slot:
        publish(tasks.inbound_drain, [int(slot)])


def hand_over_on_commit(interaction_id):
    """hand_over() once the current transaction commits (at once outside one)."""
    transaction.on_commit(partial(hand_over, [str(interaction_id)]), robust=True)


def take(slot):
    """The next ids for drainer `slot`, renewing its slot; none, and the slot given
    back, when the list is empty."""
    ids = client().take(keys=[list_key(), slot_key(slot)], args=[BATCH, SLOT_SECONDS])
    return [interaction_id.decode() for interaction_id in ids]
