"""Inbound webhooks at the database's pace: the app as production runs it, under
concurrent signed deliveries, against the raw floor of the same writes.

What runs (all on this machine, started and stopped by the script):

  web     gunicorn with the production settings (`config.settings.production`,
          the environment of `.ci/run`'s check --deploy step plus local bench keys),
          behind a pretend proxy (`X-Forwarded-Proto: https`), on PostgreSQL and Redis;
          `--web gthread` (default, as docker/start-web.sh), `uvicorn` (as start-live.sh)
          or `sync`
  worker  a real Celery worker with the same settings on the same broker, started after
          the timed phases: it drains what the webhooks accepted, and its rate is the
          messages fully processed per second (one inbound task a message: the
          receivers, then escalation's sentiment, rules, routing, understanding;
          bench/worker_drain.py measures the drain alone, beside a no-op task's rate)
  client  an asyncio HTTP/1.1 client in this process (keep-alive where the server
          offers it), every request built and signed before the clock starts

For each concurrency (1, 8 and 32 clients) and kind, interleaved in that order:

  sms     `POST /webhooks/twilio/sms/`, signed by the official twilio RequestValidator,
          a unique MessageSid each (and every 25th delivered twice at once, as a
          provider retries), senders taken in turn from patients whose conversation is
          open (a warm-up opened them), so no two requests in flight share one
  floor   the same rows written by psycopg at the same concurrency, one transaction
          per message (an SMS: the interaction, the raw event, the conversation's
          update), the values encrypted beforehand, into scratch copies of the tables
          (same columns, indexes and unique constraints; no foreign keys)
  email   `POST /webhooks/email/inbound/`, HMAC-signed raw messages (each opens a
          conversation, as a first message of a thread does); its floor adds the
          conversation, its team grant, the email detail and the signature's use
  portal  `POST /api/v1/portal/messages/` with a `portal:write` key, into a thread per
          patient; its floor adds the audit row
  health  `GET /health/` on the same server at the same concurrency

Then the rows are counted (every 2xx stored once: 0 lost, 0 duplicated), the worker
drains the backlog, and the script prints requests/s, p50, p99 and each figure's
ratio to its floor, with the load average (other processes on the machine show in
every number; the ratios of interleaved runs move less).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_ingest \\
    REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/ingest.py [--quick] [--web uvicorn|gthread|sync] \\
        [--web-workers 4] [--levels 1,8,32] [--kinds sms,email,portal]
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    inbound_unprocessed_since,
    prepare_database,
    setup_django,
    start_celery_worker,
    stop_process,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_ingest"
TEAM = "Bench ingest front desk"
PRACTICE_NUMBER = "+15005550177"
MAILBOX = "care@ingest.bench.example"
PUBLIC_BASE_URL = "https://contact.bench.example"
SMS_PATH = "/webhooks/twilio/sms/"
EMAIL_PATH = "/webhooks/email/inbound/"
PORTAL_PATH = "/api/v1/portal/messages/"
HEALTH_PATH = "/health/"
BODIES = (
    "Yes, Tuesday at 10 works for me, thank you",
    "Can you tell me if my form arrived?",
    "I will be there, see you then",
    "Running 10 minutes late today sorry",
)
RETRY_EVERY = 25


def _bench_key(label):
    """Fixed keys of this bench only (the data set outlives one run, and the blind
    index of its patients' phones must match the server's key)."""
    digest = hashlib.sha256(f"contactcenter-bench-ingest-{label}".encode()).digest()
    return base64.b64encode(digest).decode()


BENCH_ENV = {
    "FIELD_ENCRYPTION_KEYS": f"bench1:{_bench_key('field')}",
    "BLIND_INDEX_KEY": _bench_key("blind"),
    "AUDIT_MAC_KEYS": f"bench1:{_bench_key('audit')}",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "bench-ingest-twilio-auth-token",
    "EMAIL_WEBHOOK_SECRET": "bench-ingest-email-webhook-secret",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, in order")
    parser.add_argument("--kinds", default="sms,email,portal")
    # gthread, as docker/start-web.sh runs the API and the webhooks.
    parser.add_argument("--web", choices=["uvicorn", "gthread", "sync"], default="gthread")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread process")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--senders", type=int, help="patients writing in (default 1000)")
    parser.add_argument("--requests", type=int, help="SMS requests per level above 1")
    parser.add_argument("--skip-drain", action="store_true", help="no worker phase")
    parser.add_argument(
        "--drain-sample",
        type=int,
        help="stop the drain after this many messages fully processed (the rate is theirs) "
        "and empty the bench broker's queues after",
    )
    parser.add_argument(
        "--baseline-root",
        help="another checkout of the project (e.g. `git worktree add /tmp/base main`): a "
        "second gunicorn runs its code on the same database, timed interleaved with this one",
    )
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    args.kinds = [kind for kind in args.kinds.split(",") if kind]
    if args.senders is None:
        args.senders = 64 if args.quick else 1000
    if args.requests is None:
        args.requests = 240 if args.quick else 3000
    return args


def counts_for(args, kind, level):
    """Requests of one kind at one level: fewer alone (one client is slow), fewer
    email and portal messages than SMS (the issue's figure is the SMS one)."""
    base = args.requests if level > 1 else max(60, args.requests // 6)
    return base if kind in ("sms", "health", "floor") else max(60, base // 3)


# ---------------------------------------------------------------- data set


def prepare(senders):
    """The team, the three channel accounts, `senders` patients with a phone and an
    email, a portal key. A rerun reuses them and resolves the conversations the
    previous run left open, so every run starts from the same state."""
    from channels_app.models import ChannelAccount, Conversation
    from contactcenter.models import Team
    from contactcenter.services import api_client_create, team_create
    from patients.models import Channel, Patient
    from patients.services import ContactInput, patient_create

    team = Team.objects.filter(name=TEAM).first() or team_create(name=TEAM)
    for kind, address in (
        (Channel.SMS, PRACTICE_NUMBER),
        (Channel.EMAIL, MAILBOX),
        (Channel.PORTAL, "https://portal.bench.example/hook"),
    ):
        ChannelAccount.objects.get_or_create(
            kind=kind, address=address, defaults={"name": f"Bench {kind}", "team": team}
        )
    have = Patient.objects.filter(team=team, mrn_index__isnull=False).count()
    for n in range(have, senders):
        patient_create(
            team=team,
            mrn=f"BENCH-INGEST-{n}",
            given_name="Bench",
            family_name=f"Patient {n}",
            time_zone="America/New_York",
            phones=[ContactInput(value=sender_phone(n))],
            emails=[ContactInput(value=sender_email(n))],
        )
    Conversation.objects.filter(team=team).exclude(status=Conversation.Status.RESOLVED).update(
        status=Conversation.Status.RESOLVED
    )
    patients = list(
        Patient.objects.filter(team=team).order_by("created_at", "id").values_list("pk", flat=True)
    )[:senders]
    key = api_client_create(name=f"bench-ingest-{os.getpid()}", scopes=["portal:write"], team=team)
    return team, patients, key.key


def sender_phone(n):
    return f"+1415{7_000_000 + n:07d}"


def sender_email(n):
    return f"patient{n}@ingest.bench.example"


# ---------------------------------------------------------------- requests


def http_request(method, path, *, body=b"", headers=None):
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "X-Forwarded-Proto: https",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sms_requests(tag, count, senders, offset):
    """(provider ids, requests); every RETRY_EVERY-th request is followed by a copy."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(BENCH_ENV["TWILIO_AUTH_TOKEN"])
    ids, requests = [], []
    for n in range(count):
        sid = f"SM{tag}{n:06d}"
        params = {
            "MessageSid": sid,
            "AccountSid": BENCH_ENV["TWILIO_ACCOUNT_SID"],
            "From": sender_phone((offset + n) % senders),
            "To": PRACTICE_NUMBER,
            "Body": BODIES[n % len(BODIES)],
            "NumMedia": "0",
        }
        signature = validator.compute_signature(PUBLIC_BASE_URL + SMS_PATH, params)
        request = http_request(
            "POST",
            SMS_PATH,
            body=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        ids.append(sid)
        requests.append(request)
        if n % RETRY_EVERY == 0:
            requests.append(request)
    return ids, requests


def email_requests(tag, count, senders, offset):
    secret = BENCH_ENV["EMAIL_WEBHOOK_SECRET"].encode()
    ids, requests = [], []
    for n in range(count):
        message_id = f"<{tag}{n:06d}@ingest.bench.example>"
        raw = (
            f"From: Bench Patient <{sender_email((offset + n) % senders)}>\r\n"
            f"To: {MAILBOX}\r\n"
            f"Subject: Question {n}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{BODIES[n % len(BODIES)]}\r\n"
        ).encode()
        stamp = str(int(time.time()))
        mac = hmac.new(secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        request = http_request(
            "POST",
            EMAIL_PATH,
            body=raw,
            headers={
                "Content-Type": "message/rfc822",
                "X-Contactcenter-Signature": f"t={stamp},v1={mac}",
            },
        )
        ids.append(message_id)
        requests.append(request)
    return ids, requests


def portal_requests(tag, count, patients, key, offset):
    ids, requests = [], []
    for n in range(count):
        message_id = f"PM{tag}{n:06d}"
        index = (offset + n) % len(patients)
        body = json.dumps(
            {
                "patient": str(patients[index]),
                "body": BODIES[n % len(BODIES)],
                "thread_id": f"bench-thread-{index}",
                "message_id": message_id,
            }
        ).encode()
        request = http_request(
            "POST",
            PORTAL_PATH,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        ids.append(message_id)
        requests.append(request)
        if n % RETRY_EVERY == 0:
            requests.append(request)
    return ids, requests


# ---------------------------------------------------------------- client


async def _exchange(reader, writer, payload):
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked, close = None, False, lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        close = True
    return status, close


async def _drive(requests, concurrency, port):
    """Send every request with `concurrency` clients; [(status, seconds)] and the
    count of requests sent again on a fresh connection after the server closed an
    idle one."""
    results, resent = [], 0
    pending = iter(requests)

    async def client():
        nonlocal resent
        reader = writer = None
        for payload in pending:
            started = time.perf_counter()
            for attempt in (1, 2):
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    status, close = await _exchange(reader, writer, payload)
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    writer = None
                    if attempt == 2:
                        raise
                    resent += 1
                    continue
                break
            results.append((status, time.perf_counter() - started))
            if close:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.perf_counter() - started, resent


def drive(requests, concurrency, port):
    return asyncio.run(_drive(requests, concurrency, port))


# ---------------------------------------------------------------- floor


def _insert_sql(table, columns):
    names = ", ".join(f'"{column}"' for column in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    return f'INSERT INTO "{table}" ({names}) VALUES ({placeholders})'


class Floor:
    """Scratch copies of the tables a webhook writes, and the same rows for them."""

    TABLES = ("interaction", "rawevent", "conversation", "emaildetail", "audit", "grant", "sig")

    def __init__(self, connection):
        from channels_app.models import (
            Conversation,
            ConversationGroupObjectPermission,
            EmailDetail,
            Interaction,
            RawEvent,
            WebhookSignatureUse,
        )
        from compliance.models import AuditEvent

        self.models = {
            "interaction": Interaction,
            "rawevent": RawEvent,
            "conversation": Conversation,
            "emaildetail": EmailDetail,
            "audit": AuditEvent,
            "grant": ConversationGroupObjectPermission,
            "sig": WebhookSignatureUse,
        }
        self.tables = {name: f"bench_floor_{name}" for name in self.models}
        with connection.cursor() as cursor:
            for name, model in self.models.items():
                cursor.execute(f'DROP TABLE IF EXISTS "{self.tables[name]}"')
                cursor.execute(
                    f'CREATE TABLE "{self.tables[name]}" '
                    f'(LIKE "{model._meta.db_table}" INCLUDING ALL)'
                )

    def drop(self, connection):
        with connection.cursor() as cursor:
            for table in self.tables.values():
                cursor.execute(f'DROP TABLE IF EXISTS "{table}"')

    def insert(self, name, instance, connection):
        """(sql, values) of an INSERT of `instance` into the scratch copy, values
        prepared (encrypted) as the ORM would save them."""
        fields = [
            f
            for f in self.models[name]._meta.concrete_fields
            if not (f.primary_key and f.get_internal_type() in ("AutoField", "BigAutoField"))
        ]
        values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
        return _insert_sql(self.tables[name], [f.column for f in fields]), values

    def copy_conversations(self, connection, ids):
        from channels_app.models import Conversation

        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{self.tables["conversation"]}" SELECT * FROM '
                f'"{Conversation._meta.db_table}" WHERE id = ANY(%s)',
                [list(ids)],
            )


def floor_transactions(floor, kind, count, context, connection):
    """Per message, the statements of one transaction: [(sql, values), ...]."""
    from django.utils import timezone

    from channels_app.models import (
        Conversation,
        ConversationGroupObjectPermission,
        EmailDetail,
        Interaction,
        RawEvent,
        WebhookSignatureUse,
    )
    from compliance.models import AuditEvent
    from compliance.services import _build_row

    touch = (
        f'UPDATE "{floor.tables["conversation"]}" SET last_interaction_at = %s, '
        "last_direction = 'inbound', last_preview = %s, last_inbound_at = %s, updated_at = %s "
        "WHERE id = %s"
    )
    transactions = []
    for n in range(count):
        now = timezone.now()
        body = BODIES[n % len(BODIES)]
        statements = []
        if kind == "email":
            conversation = Conversation(
                id=uuid.uuid4(),
                status="open",
                channel="email",
                account_id=context["email_account"],
                team_id=context["team"],
                patient_id=context["patients"][n % len(context["patients"])],
                contact_address=sender_email(n),
                contact_index=secrets.token_hex(32),
                subject=f"Question {n}",
                last_interaction_at=now,
            )
            statements.append(floor.insert("conversation", conversation, connection))
            statements.append(
                floor.insert(
                    "grant",
                    ConversationGroupObjectPermission(
                        permission_id=context["view_conversation"],
                        group_id=context["group"],
                        content_object_id=conversation.pk,
                    ),
                    connection,
                )
            )
            statements.append(
                floor.insert(
                    "sig", WebhookSignatureUse(signature=secrets.token_hex(32)), connection
                )
            )
            conversation_id = conversation.pk
        else:
            conversation_id = context[f"{kind}_conversations"][
                n % len(context[f"{kind}_conversations"])
            ]
        interaction = Interaction(
            id=uuid.uuid4(),
            conversation_id=conversation_id,
            patient_id=context["patients"][n % len(context["patients"])],
            channel=kind,
            kind="message",
            direction="inbound",
            body=body,
            provider_id=f"FLOOR{kind}{uuid.uuid4().hex}",
            occurred_at=now,
        )
        statements.append(floor.insert("interaction", interaction, connection))
        raw = {"MessageSid": [interaction.provider_id], "Body": [body], "From": ["+14155550100"]}
        if kind == "email":
            raw = {"rfc822_base64": base64.b64encode(body.encode() * 6).decode()}
        statements.append(
            floor.insert(
                "rawevent",
                RawEvent(
                    id=uuid.uuid4(),
                    source=kind,
                    provider_id=interaction.provider_id,
                    payload=raw,
                    interaction_id=interaction.pk,
                ),
                connection,
            )
        )
        if kind == "email":
            statements.append(
                floor.insert(
                    "emaildetail",
                    EmailDetail(interaction_id=interaction.pk, message_id=interaction.provider_id),
                    connection,
                )
            )
        if kind == "portal":
            event = AuditEvent(
                **_build_row(
                    action="create",
                    resource_type="interaction",
                    patient_ids=[interaction.patient_id],
                    http_status=201,
                )
            )
            statements.append(floor.insert("audit", event, connection))
        statements.append((touch, [now, body, now, now, conversation_id]))
        transactions.append(statements)
    return transactions


async def _floor_drive(transactions, concurrency, conninfo):
    import psycopg

    connections = [await psycopg.AsyncConnection.connect(conninfo) for _ in range(concurrency)]
    latencies = []
    pending = iter(transactions)

    async def writer(connection):
        for statements in pending:
            started = time.perf_counter()
            async with connection.transaction():
                for sql, values in statements:
                    await connection.execute(sql, values, prepare=True)
            latencies.append((200, time.perf_counter() - started))

    started = time.perf_counter()
    await asyncio.gather(*(writer(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return latencies, elapsed, 0


def floor_drive(transactions, concurrency, conninfo):
    return asyncio.run(_floor_drive(transactions, concurrency, conninfo))


# ---------------------------------------------------------------- processes


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def production_environment(log_dir):
    from django.conf import settings

    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "CC_TEST_", "PYTEST_"))
    }
    environment.update(BENCH_ENV)
    environment.update(
        {
            # As .ci/run's check --deploy step, with the bench's own keys.
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "CONTACTCENTER_READ_DEV_ENV": "false",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "REDIS_URL": os.environ.get("REDIS_URL", settings.REDIS_URL),
            "ALLOWED_HOSTS": "127.0.0.1,contact.bench.example",
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "EMAIL_URL": "smtp+tls://bench:bench@127.0.0.1:9/",
            "AUDIT_CHECKPOINT_SINK": f"file://{log_dir}/audit-checkpoints.jsonl",
            "FHIR_EXPORT_DIR": f"{log_dir}/fhir",
            # One integration posting at this rate would be given a limit that fits.
            "THROTTLE_API_KEY_RATE": "1000000/minute",
            "LOG_FORMAT": "json",
        }
    )
    return environment


def start_web(args, port, environment, log_dir, root=ROOT, name="web"):
    if args.web == "uvicorn":
        app = ["config.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker"]
    elif args.web == "gthread":
        app = [
            "config.wsgi:application",
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
        ]
    else:
        app = ["config.wsgi:application", "--worker-class", "sync"]
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        *app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.web_workers),
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
    ]
    log = open(Path(log_dir) / f"{name}.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=root, env=environment, stdout=log, stderr=log)  # noqa: S603
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with {process.returncode}; see {log_dir}/{name}.log")
        try:
            results, _, _ = drive([http_request("GET", HEALTH_PATH)], 1, port)
            if results[0][0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit(f"gunicorn did not answer /health/ within a minute; see {log_dir}/{name}.log")


# ---------------------------------------------------------------- figures


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(results, elapsed):
    times = [seconds * 1000 for _, seconds in results]
    return {
        "requests": len(results),
        "rate": len(results) / elapsed,
        "p50": statistics.median(times),
        "p99": percentile(times, 99),
        "statuses": sorted({status for status, _ in results}),
    }


def print_row(table, row):
    """One line as soon as it is measured (the table is printed whole at the end)."""
    level, kind, figures, _resent, before = row
    floors = {(lv, k): f for lv, k, f, _, _ in table}
    floor_figures = floors.get((level, f"{kind.split(' ')[0]} floor"))
    ratio = f"{figures['rate'] / floor_figures['rate']:.2f}" if floor_figures else ""
    print(
        f"  {level:>3} {kind:<15}{figures['rate']:>7.0f}/s p50 {figures['p50']:.1f} "
        f"p99 {figures['p99']:.1f} ms {ratio} {','.join(map(str, figures['statuses']))} "
        f"load {before}",
        flush=True,
    )


def load():
    return "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def _stored_ids(ids):
    """Provider ids as stored: an email's Message-ID without its angle brackets."""
    return [i.strip("<>") for i in ids]


def count_rows(ids_by_kind):
    """(stored, duplicated, missing) per kind, by provider id, in the real tables."""
    from django.db.models import Count

    from channels_app.models import Interaction, RawEvent

    figures = {}
    for kind, ids in ids_by_kind.items():
        channel = kind.split(" ")[0]
        provider_ids = _stored_ids(ids)
        rows = dict(
            Interaction.objects.filter(channel=channel, provider_id__in=provider_ids)
            .values_list("provider_id")
            .annotate(n=Count("id"))
        )
        raw = (
            RawEvent.objects.filter(provider_id__in=provider_ids, interaction__isnull=False)
            .values("provider_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        figures[kind] = {
            "sent": len(provider_ids),
            "stored": sum(rows.values()),
            "duplicated": sum(n - 1 for n in rows.values() if n > 1) + raw,
            "missing": len(set(provider_ids) - set(rows)),
        }
    return figures


def purge_queues(environment):
    """Empty the task queues of the bench's broker (the production settings' queue
    names, unprefixed): run before a timed run and after a sampled drain, so a
    drain only ever works on this run's messages. Point REDIS_URL at a database of
    the bench's own. The inbound messages' list and drainer slots
    (channels_app/inbound_queue.py) go with them."""
    import redis

    client = redis.Redis.from_url(environment["REDIS_URL"])
    for queue in ("inbound", "escalations", "outbound", "reminders", "default"):
        client.delete(queue)
    for key in client.scan_iter("inbound:*"):
        client.delete(key)


def drain(ids_by_kind, concurrency, environment, log_dir, timeout, sample=None):
    """Start the worker on the backlog; messages fully processed (the inbound task's
    mark and the escalation task's run) per second, between the first and the last
    completion, from the database's own timestamps."""
    from django.db.models import Max, Min

    from channels_app.models import Interaction
    from escalation.models import EscalationRun

    mine = Interaction.objects.none()
    for kind, ids in ids_by_kind.items():
        kind = kind.split(" ")[0]
        mine = mine | Interaction.objects.filter(channel=kind, provider_id__in=_stored_ids(ids))
    ids = list(mine.values_list("pk", flat=True))
    total = len(ids)
    goal = min(total, sample or total)
    worker = start_celery_worker(
        queues=("inbound", "escalations", "outbound", "default"),
        concurrency=concurrency,
        name=f"bench-ingest-{os.getpid()}",
        log_path=Path(log_dir) / "worker.log",
        environment=environment,
    )
    since = mine.aggregate(first=Min("created_at"))["first"]
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            processed = total - inbound_unprocessed_since(since)
            # The exact count (by id) only once enough are marked processed.
            if processed >= goal:
                done = EscalationRun.objects.filter(interaction_id__in=ids, stage="text").count()
                if done >= goal:
                    break
            if worker.poll() is not None:
                sys.exit(f"the worker exited with {worker.returncode}; see {log_dir}/worker.log")
            if int(time.monotonic() - started) % 15 == 0:
                print(f"  {processed}/{total} marked processed", flush=True)
            time.sleep(0.5)
    finally:
        stop_process(worker)
    span = EscalationRun.objects.filter(interaction_id__in=ids, stage="text").aggregate(
        first=Min("created_at"), last=Max("created_at")
    )
    processed = Interaction.objects.filter(pk__in=ids, processed_at__isnull=False).count()
    done = EscalationRun.objects.filter(interaction_id__in=ids, stage="text").count()
    if sample:
        purge_queues(environment)
    seconds = (
        (span["last"] - span["first"]).total_seconds() if span["first"] and span["last"] else 0
    )
    return {"total": total, "done": done, "processed": processed, "seconds": seconds}


# ---------------------------------------------------------------- run


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL, CC_TEST_PREFIX=f"bench-ingest-{os.getpid()}-", **BENCH_ENV)
    from django.conf import settings
    from django.contrib.auth.models import Permission
    from django.db import connection

    from channels_app.models import ChannelAccount, Conversation
    from contactcenter.blind_index import phone_index
    from tests.stubs.twilio_stub import TwilioStub

    created = prepare_database()
    team, patients, portal_key = prepare(args.senders)
    db = settings.DATABASES["default"]
    conninfo = f"dbname={db['NAME']} host={db['HOST']} port={db['PORT'] or 5432} user={db['USER']}"
    if db.get("PASSWORD"):
        conninfo += f" password={db['PASSWORD']}"
    log_dir = tempfile.mkdtemp(prefix="bench-ingest-")
    port = free_port()
    environment = production_environment(log_dir)
    purge_queues(environment)
    tag = secrets.token_hex(3)
    ids_by_kind = {}
    table = []
    floor = Floor(connection)
    with TwilioStub() as stub:
        environment.update(
            TWILIO_API_BASE_URL=stub.base_url,
            TWILIO_ACCOUNT_SID=stub.account_sid,
            TWILIO_AUTH_TOKEN=BENCH_ENV["TWILIO_AUTH_TOKEN"],
        )
        connection.close()
        web = start_web(args, port, environment, log_dir)
        servers = [("", port)]
        baseline = None
        if args.baseline_root:
            base_port = free_port()
            baseline = start_web(
                args, base_port, environment, log_dir, root=args.baseline_root, name="baseline"
            )
            servers.append((" (base)", base_port))
        try:
            # Warm-up, untimed: every sender's SMS conversation and portal thread opened.
            print(f"warming up ({args.senders} senders) ...", flush=True)
            for kind in ("sms", "portal"):
                if kind not in args.kinds:
                    continue
                if kind == "sms":
                    ids, requests = sms_requests(f"{tag}w", args.senders, args.senders, 0)
                else:
                    ids, requests = portal_requests(
                        f"{tag}w", args.senders, patients, portal_key, 0
                    )
                ids_by_kind.setdefault(kind, []).extend(ids)
                results, _, _ = drive(requests, 8, port)
                bad = [status for status, _ in results if status >= 300]
                if bad:
                    sys.exit(f"warm-up {kind}: answers {sorted(set(bad))}; see {log_dir}/web.log")
            sms_account = ChannelAccount.objects.get(kind="sms", address=PRACTICE_NUMBER)
            context = {
                "team": team.pk,
                "group": team.group_id,
                "patients": patients,
                "email_account": ChannelAccount.objects.get(kind="email", address=MAILBOX).pk,
                "view_conversation": Permission.objects.get(
                    codename="view_conversation", content_type__app_label="channels_app"
                ).pk,
                "sms_conversations": list(
                    Conversation.objects.filter(
                        account=sms_account,
                        contact_index__in=[
                            phone_index(sender_phone(n)) for n in range(args.senders)
                        ],
                    )
                    .exclude(status="resolved")
                    .values_list("pk", flat=True)
                ),
                "portal_conversations": list(
                    Conversation.objects.filter(channel="portal", team=team)
                    .exclude(status="resolved")
                    .values_list("pk", flat=True)
                ),
            }
            floor.copy_conversations(
                connection, context["sms_conversations"] + context["portal_conversations"]
            )
            offset = 1
            for level in args.levels:
                for kind in [*args.kinds, "health"]:
                    count = counts_for(args, kind, level)
                    for suffix, server_port in servers:
                        level_tag = f"{tag}{'b' if suffix else ''}l{level}"
                        if kind == "health":
                            requests = [http_request("GET", HEALTH_PATH)] * count
                        elif kind == "sms":
                            ids, requests = sms_requests(level_tag, count, args.senders, offset)
                        elif kind == "email":
                            ids, requests = email_requests(level_tag, count, args.senders, offset)
                        else:
                            ids, requests = portal_requests(
                                level_tag, count, patients, portal_key, offset
                            )
                        if kind != "health":
                            ids_by_kind.setdefault(kind + suffix, []).extend(ids)
                        before = load()
                        results, elapsed, resent = drive(requests, level, server_port)
                        table.append(
                            (level, kind + suffix, summary(results, elapsed), resent, before)
                        )
                        print_row(table, table[-1])
                    if kind == "health":
                        continue
                    transactions = floor_transactions(floor, kind, count, context, connection)
                    connection.close()
                    try:
                        results, elapsed, _ = floor_drive(transactions, level, conninfo)
                    except Exception as exc:  # a shared server out of connections, say
                        print(f"  {kind} floor at {level}: {type(exc).__name__}: {exc}")
                        continue
                    table.append((level, f"{kind} floor", summary(results, elapsed), 0, load()))
                    print_row(table, table[-1])
                offset += 7
            connection.close()
        finally:
            stop_process(web)
            stop_process(baseline)
        rows = count_rows(ids_by_kind)
        drained = None
        if not args.skip_drain:
            print("draining the backlog with the worker ...", flush=True)
            drained = drain(
                ids_by_kind,
                args.worker_concurrency,
                environment,
                log_dir,
                timeout=300 if args.quick else 1200,
                sample=args.drain_sample,
            )
    floor.drop(connection)

    print()
    print("Inbound webhooks, production settings under gunicorn, against their raw floor")
    web_class = f"{args.web}" + (f" x{args.threads} threads" if args.web == "gthread" else "")
    print(
        f"database {db['NAME']} ({'created' if created else 'reused'}); gunicorn "
        f"{args.web_workers} x {web_class}; {args.senders} senders; {os.cpu_count()} CPUs; "
        f"every {RETRY_EVERY}th SMS and portal message delivered twice at once; logs in {log_dir}"
    )
    print(
        f"{'clients':>7} {'what':<15}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'of floor':>10}  statuses  load before"
    )
    floors = {(level, kind): figures for level, kind, figures, _, _ in table}
    for level, kind, figures, resent, before in table:
        ratio = ""
        floor_figures = floors.get((level, f"{kind.split(' ')[0]} floor"))
        if floor_figures:
            ratio = f"{figures['rate'] / floor_figures['rate']:.2f}"
        extra = f" ({resent} resent)" if resent else ""
        print(
            f"{level:>7} {kind:<15}{figures['requests']:>9}{figures['rate']:>9.0f}"
            f"{figures['p50']:>9.1f}{figures['p99']:>9.1f}{ratio:>10}  "
            f"{','.join(map(str, figures['statuses']))}{extra}  {before}"
        )
    print()
    for kind, figures in rows.items():
        print(
            f"{kind}: {figures['sent']} unique messages sent (and their repeats), "
            f"{figures['stored']} stored, {figures['missing']} lost, "
            f"{figures['duplicated']} duplicated"
        )
    if drained:
        rate = (drained["done"] - 1) / drained["seconds"] if drained["seconds"] else 0
        print(
            f"worker (concurrency {args.worker_concurrency}, queues inbound, escalations, "
            f"outbound, default): {drained['done']} of {drained['total']} messages fully "
            f"processed ({drained['processed']} marked by the inbound task) in "
            f"{drained['seconds']:.1f} s: {rate:.0f} messages/s"
        )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
