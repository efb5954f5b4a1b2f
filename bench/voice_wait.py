"""The phone queue's wait step: what Twilio asks every half minute or so for every
caller on hold (their place, the expected wait, the callback offer), timed as a
signed webhook against its floor, at a short and a long queue.

For each queue length the script seeds one team queue of callers on the line and
pending callbacks (half each, interleaved in time) plus recently answered calls,
then times, interleaved request by request:

  webhook  POST /webhooks/twilio/voice/wait/ for the last caller in line, signed
           with the twilio package's RequestValidator, through Django's test client
  floor    the same statements by hand over one psycopg connection: the call by its
           CallSid, the two counts of who is ahead, the recent answered waits, and
           the once-per-call update of "heard the offer"

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_voice \\
        .venv/bin/python bench/voice_wait.py [--lengths 20,2000] [--rounds 300]
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database, raw_connection, setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_voice"
WAIT_PATH = "/webhooks/twilio/voice/wait/"
PRACTICE_NUMBER = "+15005550006"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="20,2000", help="queue lengths to time")
    parser.add_argument("--rounds", type=int, default=300, help="timed requests per variant")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests per variant")
    return parser.parse_args()


def seed_queue(length):
    """A fresh team and line with `length` entries ahead of one last caller, and
    twenty answered calls of the last hour. Returns the last caller's CallSid."""
    from django.db import transaction
    from django.utils import timezone

    from channels_app.models import (
        Callback,
        CallDetail,
        ChannelAccount,
        Conversation,
        Interaction,
    )
    from contactcenter.services import team_create
    from patients.models import Channel

    now = timezone.now()
    team = team_create(name=f"Bench voice queue {uuid.uuid4().hex[:8]}")
    account, _ = ChannelAccount.objects.get_or_create(
        kind=Channel.VOICE, address=PRACTICE_NUMBER, defaults={"name": "Bench line", "team": team}
    )

    def call(n, *, queued_at, result, answered_at=None, wait=None):
        conversation = Conversation(
            channel=Channel.VOICE,
            account=account,
            team=team,
            contact_address=f"+1415{n:07d}",
            last_interaction_at=queued_at,
        )
        interaction = Interaction(
            conversation=conversation,
            channel=Channel.VOICE,
            kind=Interaction.Kind.CALL,
            direction=Interaction.Direction.INBOUND,
            provider_id="CA" + uuid.uuid4().hex,
            occurred_at=queued_at,
        )
        detail = CallDetail(
            interaction=interaction,
            queue_team=team,
            queued_at=queued_at,
            queue_result=result,
            answered_at=answered_at,
            queue_wait_seconds=wait,
        )
        return conversation, interaction, detail

    rows = []
    for n in range(20):
        start = now - timedelta(minutes=50 - n)
        rows.append(
            call(
                n,
                queued_at=start,
                result=CallDetail.QueueResult.ANSWERED,
                answered_at=start + timedelta(seconds=60 + 10 * n),
                wait=60 + 10 * n,
            )
        )
    first = now - timedelta(minutes=40)
    step = timedelta(minutes=40) / (length + 1)
    callbacks = []
    for n in range(length):
        queued_at = first + step * n
        rows.append(call(100 + n, queued_at=queued_at, result=CallDetail.QueueResult.IN_PROGRESS))
        if n % 2:
            callbacks.append((len(rows) - 1, queued_at))
    rows.append(call(99_999, queued_at=now, result=CallDetail.QueueResult.IN_PROGRESS))
    with transaction.atomic():
        Conversation.objects.bulk_create([row[0] for row in rows])
        Interaction.objects.bulk_create([row[1] for row in rows])
        for _conversation, interaction, detail in rows:
            detail.interaction = interaction
        CallDetail.objects.bulk_create([row[2] for row in rows])
        # Every other caller ahead took a callback: their call left the line.
        Callback.objects.bulk_create(
            [
                Callback(
                    conversation=rows[index][0],
                    call=rows[index][2],
                    account=account,
                    team=team,
                    phone=rows[index][0].contact_address,
                    phone_index=uuid.uuid4().hex,
                    queued_at=queued_at,
                    requested_at=queued_at,
                    due_at=queued_at + timedelta(minutes=30),
                )
                for index, queued_at in callbacks
            ]
        )
        CallDetail.objects.filter(pk__in=[rows[index][2].pk for index, _ in callbacks]).update(
            queue_result=CallDetail.QueueResult.CALLBACK
        )
    return rows[-1][1].provider_id, team.pk, length + 1


def floor_statements(cursor, call_sid, team_id):
    """What the wait step must read and write, by hand."""
    cursor.execute(
        "SELECT c.interaction_id, c.queue_team_id, c.queued_at, c.language"
        " FROM channels_app_calldetail c JOIN channels_app_interaction i"
        " ON i.id = c.interaction_id WHERE i.channel = 'voice' AND i.provider_id = %s",
        [call_sid],
    )
    interaction_id, team_id, queued_at, _language = cursor.fetchone()
    cursor.execute(
        "SELECT count(*) FROM channels_app_calldetail WHERE queue_team_id = %s"
        " AND queue_result = 'in_progress' AND queued_at IS NOT NULL AND ended_at IS NULL"
        " AND queued_at < %s",
        [team_id, queued_at],
    )
    ahead = cursor.fetchone()[0]
    cursor.execute(
        "SELECT count(*) FROM channels_app_callback WHERE team_id = %s AND status = 'pending'"
        " AND queued_at < %s",
        [team_id, queued_at],
    )
    ahead += cursor.fetchone()[0]
    cursor.execute(
        "SELECT queue_wait_seconds FROM channels_app_calldetail WHERE queue_team_id = %s"
        " AND queue_result = 'answered' AND answered_at >= now() - interval '2 hours'"
        " AND answered_at IS NOT NULL AND queue_wait_seconds IS NOT NULL"
        " ORDER BY answered_at DESC LIMIT 20",
        [team_id],
    )
    waits = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "UPDATE channels_app_calldetail SET callback_offered_at = now()"
        " WHERE interaction_id = %s AND callback_offered_at IS NULL",
        [interaction_id],
    )
    cursor.connection.commit()
    return ahead + 1, waits


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL)
    prepare_database()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from twilio.request_validator import RequestValidator

    raw = raw_connection()
    client = Client()
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    statements = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds per variant")
    print(f"{'queue':>6} {'webhook ms':>11} {'floor ms':>9} {'ratio':>6} {'statements':>10}")
    for length in [int(value) for value in args.lengths.split(",")]:
        call_sid, team_id, expected_position = seed_queue(length)
        params = {
            "CallSid": call_sid,
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "QueuePosition": "1",
            "QueueTime": "0",
        }
        signature = validator.compute_signature(settings.PUBLIC_BASE_URL + WAIT_PATH, params)
        position, _ = floor_statements(raw.cursor(), call_sid, team_id)
        assert position == expected_position, (position, expected_position)
        statements.clear()
        with connection.execute_wrapper(count):
            answer = client.post(WAIT_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature)
        assert answer.status_code == 200
        assert f"number {expected_position} in line".encode() in answer.content
        webhook, floor = [], []
        for round_number in range(args.warmup + args.rounds):
            started = time.perf_counter()
            client.post(WAIT_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature)
            middle = time.perf_counter()
            floor_statements(raw.cursor(), call_sid, team_id)
            ended = time.perf_counter()
            if round_number >= args.warmup:
                webhook.append((middle - started) * 1000)
                floor.append((ended - middle) * 1000)
        web_ms, floor_ms = statistics.median(webhook), statistics.median(floor)
        print(
            f"{length:>6} {web_ms:>11.2f} {floor_ms:>9.2f} {web_ms / floor_ms:>6.2f}"
            f" {len(statements):>10}"
        )
    raw.close()


if __name__ == "__main__":
    main()
