"""A realistic synthetic data set for load tests and benchmarks, encrypted exactly as
production stores it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_seed \
        .venv/bin/python bench/seed_synthetic.py --patients 100000 --interactions 1000000

Bench tooling: the benches import `seed()` (their Django already set up); run as a
script it sets Django up through bench/common.py on its own database first.

What it holds: teams (each with its group, agents, a supervisor and a channel account
per channel), patients with phones and emails, conversations on every channel (open,
pending, snoozed and resolved; assigned and unassigned; a few not yet matched to a
patient), their interactions over two years (messages, calls, voicemails, notes and
timeline events), the delivery records of outbound messages, read markers, and the
guardian group permission rows that make patients and conversations visible to their
team. One "big" team holds --big-team-open open conversations, the inbox's worst case.
Interactions per patient have a long tail: at a million interactions one patient has
12,000 and nine more have between 1,200 and 6,000.

How it loads: every encrypted value is real AES-GCM bound to its row's primary key
(the same form as `field.encrypt_value`, a fresh random nonce each), every blind index
a real HMAC, and rows go in with PostgreSQL binary COPY, one batch of patients per
transaction. --workers processes (2 by default, one per core here) each build,
encrypt and COPY their own batches over their own connection. Into empty tables, the
loaded tables' indexes, keys and foreign keys are dropped first and put back as they
were at the end (built once from the whole data, each foreign key validated by one
join): kept up row by row they cost PostgreSQL more than the rest of the load put
together. What is left is the Python side (building and encrypting the rows, about
50 s of CPU per million interactions; PostgreSQL's COPY is a few seconds) and the
index builds. Rows are written as the services would have left them (a
conversation's last_interaction_at, last_direction and last_preview are those of its
latest message, events do not move them), without save(), signals or tasks. Raw
provider events and call or email details are not generated: no inbox or timeline
read touches them.
"""

import base64
import functools
import multiprocessing
import multiprocessing.util
import os
import random
import sys
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # Run as a script: the project on sys.path and Django set up (bench/common.py)
    # before the models below are imported.
    sys.path.insert(0, str(ROOT))
    from bench.common import prepare_database, setup_django

    setup_django("postgres://postgres@127.0.0.1:5432/cc_bench_seed")
    prepare_database()

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, connections, transaction
from django.db.models import UniqueConstraint
from django.utils import timezone
from faker import Faker
from psycopg import sql
from tqdm import tqdm

from channels_app.models import (
    ChannelAccount,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationRead,
    Interaction,
    OutboundMessage,
)
from channels_app.services import VIEW_CONVERSATION
from channels_app.services import _preview as preview_of
from contactcenter import crypto, roles
from contactcenter.blind_index import EMAIL, MRN, PHONE, blind_index
from contactcenter.services import staff_create, team_create
from patients.models import Channel, ContactPoint, Patient, PatientGroupObjectPermission
from patients.selectors import VIEW_PATIENT

BIG_TEAM_NAME = "Synthetic front desk"
TEAM_NAME = "Synthetic team {:02d}"
BIG_TEAM_AGENTS = 12
TEAM_AGENTS = 6

SPAN = timedelta(days=730)
# Active conversations of the big team are spread over this much recent time, those of
# the other teams over less: a big backlog is old, a small one is fresh.
BIG_ACTIVE_WINDOW = timedelta(days=60).total_seconds()
ACTIVE_WINDOW = timedelta(days=14).total_seconds()
HEAVIEST_PATIENT = 12_000
HEAVY_PATIENTS = 10
# Pending (waiting on the patient) conversations of the big team, per open one.
BIG_PENDING_SHARE = 0.1
# The big team gets patients until it has this many conversations per active one it
# must hold, so most of its history is resolved, as in a real practice.
BIG_TEAM_HISTORY_FACTOR = 2.5
ACTIVE_SHARE = 0.03
SNOOZED_SHARE = 0.005
# Conversations from an address no patient has (yet): one per this many interactions.
INTERACTIONS_PER_UNMATCHED = 400
BATCH_INTERACTIONS = 10_000
BATCH_PATIENTS = 2_000

# Plain strings rather than the TextChoices members, so COPY adapts them as text.
SMS, EMAIL_CHANNEL, VOICE, PORTAL = (
    Channel.SMS.value,
    Channel.EMAIL.value,
    Channel.VOICE.value,
    Channel.PORTAL.value,
)
CHANNEL_WEIGHTS = {SMS: 45, EMAIL_CHANNEL: 25, VOICE: 20, PORTAL: 10}
# Cumulative weights computed once: random.choices(weights=...) sums them at every call.
CHANNELS, CHANNEL_CUM_WEIGHTS = tuple(CHANNEL_WEIGHTS), tuple(accumulate(CHANNEL_WEIGHTS.values()))
PRIORITIES, PRIORITY_CUM_WEIGHTS = (0, 1, 2, 3), tuple(accumulate((5, 80, 12, 3)))
# Mean seconds between two messages of one conversation, per channel.
MEAN_GAP = {SMS: 1_800, EMAIL_CHANNEL: 8 * 3_600, VOICE: 6 * 3_600, PORTAL: 5 * 3_600}
OPEN, PENDING, SNOOZED, RESOLVED = (
    Conversation.Status.OPEN.value,
    Conversation.Status.PENDING.value,
    Conversation.Status.SNOOZED.value,
    Conversation.Status.RESOLVED.value,
)
INBOUND, OUTBOUND, INTERNAL = (
    Interaction.Direction.INBOUND.value,
    Interaction.Direction.OUTBOUND.value,
    Interaction.Direction.INTERNAL.value,
)
MESSAGE, CALL, VOICEMAIL, NOTE, EVENT = (
    Interaction.Kind.MESSAGE.value,
    Interaction.Kind.CALL.value,
    Interaction.Kind.VOICEMAIL.value,
    Interaction.Kind.NOTE.value,
    Interaction.Kind.EVENT.value,
)

STREETS = [
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Mill",
]
CITIES = (
    ("Springfield", "IL", "America/Chicago"),
    ("Portland", "OR", "America/Los_Angeles"),
    ("Austin", "TX", "America/Chicago"),
    ("Boston", "MA", "America/New_York"),
    ("Denver", "CO", "America/Denver"),
    ("Phoenix", "AZ", "America/Phoenix"),
    ("Atlanta", "GA", "America/New_York"),
    ("Seattle", "WA", "America/Los_Angeles"),
)
# Geographic area codes: libphonenumber accepts them, so the stored E.164 values are
# what normalise_phone() would produce.
AREA_CODES = (212, 305, 312, 404, 415, 503, 512, 602, 617, 720, 206, 217)
DOCTORS = ["Patel", "Okoye", "Schmidt", "Rossi", "Kim", "Haddad", "Novak", "Alvarez"]
MEDICATIONS = [
    "lisinopril",
    "metformin",
    "atorvastatin",
    "levothyroxine",
    "amlodipine",
    "albuterol",
]
SYMPTOMS = ["cough", "rash", "back pain", "headaches", "knee pain", "sore throat", "dizziness"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
TIMES = ["8:30 am", "9:15 am", "10:00 am", "11:45 am", "1:30 pm", "2:15 pm", "3:40 pm", "4:30 pm"]
LABELS = ("billing", "refill", "scheduling", "results", "referral", "insurance")
SUBJECTS = (
    "Appointment question",
    "Refill request",
    "Lab results",
    "Billing question",
    "Referral to cardiology",
    "Forms for school",
    "Insurance update",
    "Follow-up after visit",
)

INBOUND_TEXTS = (
    "Hi, this is {first}. Can I move my appointment on {day} to later in the week?",
    "Do I need to fast before my blood test on {day}?",
    "I'm running about 15 minutes late for my {time} appointment, sorry!",
    "Can you send a refill of my {med} to the pharmacy on {street} St?",
    "C",
    "Yes, that works. Thank you!",
    "Is Dr. {doctor} in on {day}? I'd like to be seen about my {symptom}.",
    "My {symptom} is worse since yesterday. Should I come in?",
    "I got a letter with my results, what does it mean?",
    "Who can I talk to about a bill I received last week?",
    "Please call me back at this number after 5pm.",
    "Can my daughter come with me to the appointment on {day}?",
)
OUTBOUND_TEXTS = (
    "Hi {first}, this is your care team. Your appointment with Dr. {doctor} is on {day} at "
    "{time}. Reply C to confirm or R to reschedule.",
    "Thanks {first}, you're confirmed for {day} at {time}.",
    "We sent the refill for {med} to your pharmacy. It should be ready tomorrow.",
    "No fasting is needed for that test. Please bring your insurance card.",
    "Dr. {doctor} has an opening on {day} at {time}. Does that work for you?",
    "A nurse will call you within the hour about your {symptom}.",
    "Your results are normal. Dr. {doctor} will go over them at your next visit.",
    "Our billing office is open weekdays 9 to 5; they will call you on {day}.",
)
EMAIL_SENTENCES = (
    "I wanted to follow up on my visit with Dr. {doctor} last {day}.",
    "The {med} seems to help, but I still notice some {symptom} in the evenings.",
    "Could you let me know whether my referral was sent?",
    "I have attached the form from my employer; it needs a signature by {day}.",
    "My insurance changed this month, so please update my file.",
    "I would prefer an appointment in the morning if one is available.",
    "Is there anything I should bring or prepare before the appointment at {time}?",
    "I tried calling but the line was busy for a long time.",
)
REPLY_SENTENCES = (
    "Thank you for your message.",
    "Dr. {doctor} reviewed your note and would like to see you on {day} at {time}.",
    "Your referral was sent on {day}; the specialist's office will contact you.",
    "We updated your insurance details; nothing else is needed from you.",
    "Please bring a list of your current medications, including {med}.",
    "If your {symptom} gets worse before then, call us or go to urgent care.",
)
VOICEMAIL_TEXTS = (
    "Hi, this is {first} {last}, calling about my appointment on {day}. Please call me back.",
    "Hello, it's {first}. I need a refill of {med}. My pharmacy is on {street} Street. Thanks.",
    "This is {first} {last}. I have a question about my bill, call me back when you can.",
)
NOTE_TEXTS = (
    "Called the pharmacy, refill confirmed.",
    "Patient prefers afternoon appointments.",
    "Left a voicemail, will try again tomorrow.",
    "Insurance verified.",
    "Forwarded to the triage nurse.",
    "Interpreter needed for the next call.",
)
DELIVERED, SENT, FAILED, UNDELIVERABLE = (
    OutboundMessage.State.DELIVERED.value,
    OutboundMessage.State.SENT.value,
    OutboundMessage.State.FAILED.value,
    OutboundMessage.State.UNDELIVERABLE.value,
)
FAILED_DELIVERY = ((FAILED, "sms opted out"), (UNDELIVERABLE, "unreachable destination"))
PHONE_KIND, EMAIL_KIND = ContactPoint.Kind.PHONE.value, ContactPoint.Kind.EMAIL.value
KEYWORD_SOURCE = ContactPoint.ConsentSource.KEYWORD.value

PATIENT_COLUMNS = (
    "id",
    "mrn",
    "mrn_index",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address",
    "preferred_channel",
    "preferred_language",
    "time_zone",
    "team_id",
    "primary_coordinator_id",
    "needs_interpreter",
    "low_literacy",
    "hearing_impaired",
    "vip",
    "active",
    "merged_into_id",
    "created_at",
    "updated_at",
)
CONTACT_COLUMNS = (
    "id",
    "patient_id",
    "kind",
    "value",
    "value_index",
    "verified",
    "preferred",
    "sms_opted_out",
    "sms_consent_changed_at",
    "sms_consent_source",
    "created_at",
)
PERMISSION_COLUMNS = ("content_object_id", "group_id", "permission_id")
CONVERSATION_COLUMNS = (
    "id",
    "channel",
    "account_id",
    "contact_address",
    "contact_index",
    "patient_id",
    "team_id",
    "assignee_id",
    "status",
    "priority",
    "subject",
    "labels",
    "snoozed_until",
    "escalated",
    "first_response_due_at",
    "next_response_due_at",
    "resolution_due_at",
    "sla_due_at",
    "last_interaction_at",
    "last_inbound_at",
    "last_staff_response_at",
    "last_direction",
    "last_preview",
    "sentiment_first",
    "sentiment_latest",
    "language",
    "reply_token",
    "thread_key",
    "created_at",
    "updated_at",
    "resolved_at",
)
INTERACTION_COLUMNS = (
    "id",
    "conversation_id",
    "patient_id",
    "channel",
    "kind",
    "direction",
    "body",
    "provider_id",
    "author_id",
    "occurred_at",
    "created_at",
    "sentiment",
    "processed_at",
    "metadata",
)
OUTBOUND_COLUMNS = (
    "id",
    "interaction_id",
    "channel",
    "to_address",
    "state",
    "attempts",
    "last_error",
    "provider_id",
    "provider_status",
    "claimed_at",
    "created_at",
    "updated_at",
)
READ_COLUMNS = ("conversation_id", "user_id", "last_read_at")


class _Sealer:
    """What `field.encrypt_value(value, pk=pk)` returns, byte for byte in form
    (crypto.encrypt: AES-256-GCM under the keyring's primary key, a fresh random
    nonce, "<app>.<model>.<field>:<pk>" as associated data), with the fixed part of
    the associated data computed once per column instead of a FieldContext and a
    pk conversion per value, which were a quarter of the seed's Python time."""

    def __init__(self, field):
        opts = field.model._meta
        self.to_plaintext = field.to_plaintext
        self.associated_prefix = crypto.FieldContext(
            opts.app_label, opts.model_name, field.name, ""
        ).associated_data

    def encrypt_value(self, value, *, pk):
        if value is None:
            return None
        # Looked up per value, as crypto.encrypt does, so a changed keyring applies.
        keyring = crypto.field_keyring()
        nonce = os.urandom(crypto.NONCE_BYTES)
        sealed = keyring.ciphers[keyring.primary_id].encrypt(
            nonce, self.to_plaintext(value).encode(), self.associated_prefix + str(pk).encode()
        )
        payload = base64.b64encode(nonce + sealed).decode("ascii")
        return f"{crypto.stored_prefix(keyring.primary_id)}{payload}"


# Encrypted columns, looked up once: each value is bound to model, field and pk.
_PATIENT_FIELDS = {
    name: _Sealer(Patient._meta.get_field(name))
    for name in ("mrn", "given_name", "family_name", "birth_date", "sex", "address")
}
_CONTACT_VALUE = _Sealer(ContactPoint._meta.get_field("value"))
_CONVERSATION_FIELDS = {
    name: _Sealer(Conversation._meta.get_field(name))
    for name in ("contact_address", "subject", "last_preview")
}
_BODY = _Sealer(Interaction._meta.get_field("body"))
_TO_ADDRESS = _Sealer(OutboundMessage._meta.get_field("to_address"))


@dataclass(frozen=True)
class TeamInfo:
    id: int
    group_id: int
    agents: tuple  # (user id, username) pairs
    accounts: dict  # channel -> ChannelAccount id


@dataclass(frozen=True)
class Context:
    """What every worker needs; fixed for the run and sent once to each process."""

    seed: int
    now_ts: float
    mrn_offset: int
    teams: tuple
    patient_permission_id: int
    conversation_permission_id: int


@dataclass
class Plan:
    """Interactions per patient, cut into conversations with a status and an age,
    decided before any row is built: the big team's open set is chosen across all
    of its conversations, and workers then build batches independently."""

    patient_teams: list  # team index per patient
    # Per patient, per conversation: [size, status, seconds before now of its last message].
    patient_conversations: list
    # Conversations from addresses no patient has: (team index, [size, status, age]).
    unmatched: list

    def status_counts(self, team=None):
        counts = dict.fromkeys((OPEN, PENDING, SNOOZED, RESOLVED), 0)
        for index, conversations in enumerate(self.patient_conversations):
            if team is None or self.patient_teams[index] == team:
                for _, status, _ in conversations:
                    counts[status] += 1
        for owner, (_, status, _) in self.unmatched:
            if team is None or owner == team:
                counts[status] += 1
        return counts


def _interaction_counts(rng, n_patients, n_interactions):
    """A long tail summing exactly to n_interactions: a few heavy patients (the
    heaviest with HEAVIEST_PATIENT at a million), then log-normal counts, so many
    patients have none or one and some have hundreds."""
    heaviest = max(1, min(HEAVIEST_PATIENT, n_interactions // 80))
    n_heavy = min(HEAVY_PATIENTS, max(1, n_patients // 10))
    counts = [max(1, heaviest // k) for k in range(1, n_heavy + 1)]
    counts += [0] * (n_patients - n_heavy)
    rest = max(0, n_interactions - sum(counts))
    weights = [rng.lognormvariate(0, 1.1) for _ in range(n_heavy, n_patients)]
    total = sum(weights)
    for offset, weight in enumerate(weights):
        counts[n_heavy + offset] = int(weight / total * rest)
    # Rounding down leaves a remainder, dealt to ordinary patients one by one; with
    # fewer interactions than heavy patients the heavy ones give some back.
    ordinary = range(n_heavy, n_patients) if n_patients > n_heavy else range(n_patients)
    for _ in range(n_interactions - sum(counts)):
        counts[rng.choice(ordinary)] += 1
    for _ in range(sum(counts) - n_interactions):
        counts[max(range(n_patients), key=counts.__getitem__)] -= 1
    return counts


def _conversation_sizes(rng, count):
    sizes = []
    while count > 0:
        size = min(count, 1 + int(rng.expovariate(1 / 3)))
        sizes.append(size)
        count -= size
    return sizes


def _set_statuses(rng, *, matched, unmatched, active_count, open_count, window):
    """Mark active_count conversations open or pending (open_count of them open),
    with their last message within `window` seconds; a few of the rest snoozed,
    the others resolved at any time in the span."""
    rng.shuffle(matched)
    n_matched_active = max(0, active_count - len(unmatched))
    # Unmatched conversations are new, so they are all among the active ones.
    active = unmatched + matched[:n_matched_active]
    rng.shuffle(active)
    for position, item in enumerate(active):
        item[1] = OPEN if position < open_count else PENDING
        item[2] = 60 + rng.random() * window
    rest = matched[n_matched_active:]
    n_snoozed = round(len(rest) * SNOOZED_SHARE)
    span = SPAN.total_seconds()
    for position, item in enumerate(rest):
        if position < n_snoozed:
            item[1], item[2] = SNOOZED, 3_600 + rng.random() * ACTIVE_WINDOW
        else:
            # Skewed toward the recent past: a practice grows, so old threads are fewer.
            item[1], item[2] = RESOLVED, 3_600 + rng.random() ** 1.4 * (span - 3_600)


def make_plan(*, rng, n_patients, n_interactions, n_teams, big_team_open):
    unmatched_sizes = [
        1 + rng.randrange(2) for _ in range(n_interactions // INTERACTIONS_PER_UNMATCHED)
    ]
    counts = _interaction_counts(rng, n_patients, n_interactions - sum(unmatched_sizes))
    conversations = [
        [[size, RESOLVED, 0.0] for size in _conversation_sizes(rng, count)] for count in counts
    ]
    big_active = big_team_open + round(big_team_open * BIG_PENDING_SHARE)
    needed = big_active * BIG_TEAM_HISTORY_FACTOR
    # The heaviest patient is the big team's, so one agent reaches both worst cases;
    # the other heavy ones go round the other teams; then the big team takes
    # patients until it has enough history, and the rest go round the others.
    patient_teams = [0] * n_patients
    big_conversations = len(conversations[0])
    turn = 0
    for index in range(1, n_patients):
        if n_teams > 1 and (index < HEAVY_PATIENTS or big_conversations >= needed):
            patient_teams[index] = 1 + turn % (n_teams - 1)
            turn += 1
        else:
            big_conversations += len(conversations[index])
    unmatched = [(rng.randrange(n_teams), [size, OPEN, 0.0]) for size in unmatched_sizes]
    by_team = [[] for _ in range(n_teams)]
    for index, team in enumerate(patient_teams):
        by_team[team].extend(conversations[index])
    for team, matched in enumerate(by_team):
        fresh = [item for owner, item in unmatched if owner == team]
        if team == 0:
            active_count = min(big_active, len(matched) + len(fresh))
            open_count = min(big_team_open, active_count)
            window = BIG_ACTIVE_WINDOW
        else:
            active_count = round(len(matched) * ACTIVE_SHARE) + len(fresh)
            open_count = round(active_count * 0.75)
            window = ACTIVE_WINDOW
        _set_statuses(
            rng,
            matched=matched,
            unmatched=fresh,
            active_count=active_count,
            open_count=open_count,
            window=window,
        )
    return Plan(
        patient_teams=patient_teams, patient_conversations=conversations, unmatched=unmatched
    )


def make_batches(plan):
    """[(batch number, entries)], entries being (patient index or None, team index,
    conversations): about BATCH_INTERACTIONS interactions per batch, one transaction
    each; unmatched conversations are dealt round the batches."""
    batches, entries, size = [], [], 0
    n_patients = len(plan.patient_teams)
    for index in range(n_patients):
        conversations = plan.patient_conversations[index]
        entries.append((index, plan.patient_teams[index], conversations))
        size += sum(item[0] for item in conversations)
        if size >= BATCH_INTERACTIONS or len(entries) >= BATCH_PATIENTS or index == n_patients - 1:
            batches.append((len(batches), entries))
            entries, size = [], 0
    for position, (team, item) in enumerate(plan.unmatched):
        batches[position % len(batches)][1].append((None, team, [item]))
    return batches


# --- Building and loading one batch (in a worker process, or in-process) ----------

_worker = {}


def _start_worker(context):
    _worker["context"] = context


def _start_pool_worker(context):
    _start_worker(context)
    # Pool workers leave through multiprocessing's exit handlers, which run this, so
    # PostgreSQL sees each connection closed rather than dropped.
    multiprocessing.util.Finalize(None, connections.close_all, exitpriority=10)


NAME_POOL = 5_000


@functools.cache
def _name_pool(seed):
    """First and last names from Faker (the practice's patients in English and
    Spanish), drawn once per process from the seed, so the same --seed gives the
    same names. Batches pick from them: Faker's own weighted draw sums its whole
    name table at every call, which cost more than encrypting the patient."""
    faker = Faker(["en_US", "es_MX"])
    faker.seed_instance(seed)
    return (
        tuple(faker.first_name() for _ in range(NAME_POOL)),
        tuple(faker.last_name() for _ in range(NAME_POOL)),
    )


def _ascii(text):
    """Letters and digits of a name for an email address ("O'Brien-Núñez" -> "OBrienNunez")."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(character for character in plain if character.isalnum())


class _Batch:
    """The rows of one batch, as tuples in the *_COLUMNS order, ready for COPY."""

    def __init__(self, context, number):
        self.context = context
        # Reproducible from --seed and the patients already there (so an --append
        # run draws new ids); nothing secret comes from it: nonces and keys are
        # os.urandom's, in crypto.encrypt.
        self.rng = random.Random(f"{context.seed}:{context.mrn_offset}:{number}")
        self.first_names, self.last_names = _name_pool(context.seed)
        self.now = datetime.fromtimestamp(context.now_ts, tz=UTC)
        self.start = self.now - SPAN
        self.rows = {
            Patient: [],
            PatientGroupObjectPermission: [],
            ContactPoint: [],
            Conversation: [],
            ConversationGroupObjectPermission: [],
            Interaction: [],
            OutboundMessage: [],
            ConversationRead: [],
        }

    def uuid(self):
        # From the batch's generator, so the same --seed gives the same ids.
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def phone(self):
        rng = self.rng
        exchange = rng.randrange(201, 999)
        if exchange % 100 == 11:  # N11 codes are service numbers, never exchanges
            exchange += 1
        return f"+1{rng.choice(AREA_CODES)}{exchange}{rng.randrange(10_000):04d}"

    def add_patient(self, index, team, plans):
        rng, context = self.rng, self.context
        pk = self.uuid()
        first, last = rng.choice(self.first_names), rng.choice(self.last_names)
        mrn = f"SYN{context.mrn_offset + index:08d}"
        city, state, time_zone = rng.choice(CITIES)
        phones = [self.phone()] if rng.random() < 0.95 else []
        if phones and rng.random() < 0.12:
            second = self.phone()
            if second != phones[0]:
                phones.append(second)
        email = None
        if rng.random() < 0.6:
            email = f"{_ascii(first)}.{_ascii(last)}{context.mrn_offset + index}@example.org"
            email = email.lower()
        opted_out = bool(phones) and rng.random() < 0.02
        # Values are generated in normalised form (E.164, lower case), so they are
        # indexed as the services would index them after normalising.
        contacts = {value: blind_index(PHONE, value) for value in phones}
        if email:
            contacts[email] = blind_index(EMAIL, email)

        person = {"first": first, "last": last, "street": rng.choice(STREETS)}
        first_seen = self.now
        for size, status, age in plans:
            channel = rng.choices(CHANNELS, cum_weights=CHANNEL_CUM_WEIGHTS)[0]
            if channel in (SMS, VOICE) and not phones:
                channel = EMAIL_CHANNEL if email else PORTAL
            elif channel == EMAIL_CHANNEL and not email:
                channel = SMS if phones else PORTAL
            if channel == EMAIL_CHANNEL:
                address = email
            elif channel == PORTAL:
                address = ""
            else:
                address = phones[0]
            started = self.add_conversation(
                team=team,
                patient_id=pk,
                person=person,
                channel=channel,
                address=address,
                address_index=contacts.get(address, ""),
                opted_out=opted_out and channel == SMS,
                size=size,
                status=status,
                age=age,
            )
            first_seen = min(first_seen, started)
        created_at = first_seen - timedelta(days=rng.random() * 90)

        coordinator = rng.choice(team.agents)[0] if rng.random() < 0.3 else None
        birth = date(1935 + rng.randrange(85), 1 + rng.randrange(12), 1 + rng.randrange(28))
        address = {
            "line": [f"{rng.randrange(1, 9999)} {person['street']} St"],
            "city": city,
            "state": state,
            "postal_code": f"{rng.randrange(10_000, 99_999)}",
        }
        encrypted = {
            name: field.encrypt_value(value, pk=pk)
            for (name, field), value in zip(
                _PATIENT_FIELDS.items(),
                (mrn, first, last, birth, rng.choice(Patient.Sex.values), address),
                strict=True,
            )
        }
        self.rows[Patient].append(
            (
                pk,
                encrypted["mrn"],
                blind_index(MRN, mrn),
                encrypted["given_name"],
                encrypted["family_name"],
                encrypted["birth_date"],
                encrypted["sex"],
                encrypted["address"],
                rng.choice(("sms", "sms", "sms", "email", "portal", "voice")),
                "es" if rng.random() < 0.12 else "en",
                time_zone,
                team.id,
                coordinator,
                rng.random() < 0.05,
                rng.random() < 0.04,
                rng.random() < 0.02,
                rng.random() < 0.01,
                True,
                None,
                created_at,
                created_at,
            )
        )
        self.rows[PatientGroupObjectPermission].append(
            (pk, team.group_id, context.patient_permission_id)
        )
        for position, (value, value_index) in enumerate(contacts.items()):
            is_phone = value.startswith("+")
            contact_pk = self.uuid()
            opted = opted_out and position == 0
            self.rows[ContactPoint].append(
                (
                    contact_pk,
                    pk,
                    PHONE_KIND if is_phone else EMAIL_KIND,
                    _CONTACT_VALUE.encrypt_value(value, pk=contact_pk),
                    value_index,
                    rng.random() < 0.7,
                    position == 0,
                    opted,
                    created_at + timedelta(days=30) if opted else None,
                    KEYWORD_SOURCE if opted else "",
                    created_at,
                )
            )

    def add_unmatched(self, team, plan):
        size, status, age = plan
        rng = self.rng
        if rng.random() < 0.8:
            channel = SMS if rng.random() < 0.7 else VOICE
            address = self.phone()
            address_index = blind_index(PHONE, address)
        else:
            channel = EMAIL_CHANNEL
            address = f"someone{rng.randrange(10**6)}@example.net"
            address_index = blind_index(EMAIL, address)
        self.add_conversation(
            team=team,
            patient_id=None,
            person={"first": "", "last": "", "street": rng.choice(STREETS)},
            channel=channel,
            address=address,
            address_index=address_index,
            opted_out=False,
            size=size,
            status=status,
            age=age,
        )

    def _body(self, channel, direction, kind, fill):
        rng = self.rng
        if kind == NOTE:
            return rng.choice(NOTE_TEXTS)
        if kind == CALL:
            return ""
        if kind == VOICEMAIL:
            return rng.choice(VOICEMAIL_TEXTS).format_map(fill)
        inbound = direction == INBOUND
        if channel == EMAIL_CHANNEL:
            sentences = EMAIL_SENTENCES if inbound else REPLY_SENTENCES
            text = " ".join(rng.sample(sentences, 2 + rng.randrange(3))).format_map(fill)
            if inbound:
                return f"Hello,\n\n{text}\n\nBest,\n{fill['first']} {fill['last']}".strip()
            return f"Dear {fill['first'] or 'patient'},\n\n{text}\n\nKind regards,\nYour care team"
        if channel == PORTAL:
            sentences = EMAIL_SENTENCES if inbound else REPLY_SENTENCES
            return " ".join(rng.sample(sentences, 1 + rng.randrange(2))).format_map(fill)
        return rng.choice(INBOUND_TEXTS if inbound else OUTBOUND_TEXTS).format_map(fill)

    def _directions(self, count, status, matched):
        rng = self.rng
        directions, spoke = [], None
        for position in range(count):
            if position == 0:
                direction = INBOUND if not matched or rng.random() < 0.8 else OUTBOUND
            elif rng.random() < 0.08:
                direction = INTERNAL
            elif rng.random() < 0.7:
                direction = OUTBOUND if spoke == INBOUND else INBOUND
            else:
                direction = spoke
            directions.append(direction)
            if direction != INTERNAL:
                spoke = direction
        # Who spoke last follows from the status: a pending conversation waits on the
        # patient, an open one mostly on the practice.
        if status == PENDING:
            directions[-1] = OUTBOUND
        elif status == OPEN and rng.random() < 0.85:
            directions[-1] = INBOUND
        return directions

    def _times(self, count, last_at, channel):
        rng, mean = self.rng, MEAN_GAP[channel]
        times = [last_at]
        for _ in range(count - 1):
            times.append(times[-1] - timedelta(seconds=1 + rng.expovariate(1 / mean)))
        times.reverse()
        if times[0] < self.start:
            # A long thread would reach back past the span: squeeze it into it.
            scale = (last_at - self.start) / (last_at - times[0])
            times = [last_at - (last_at - at) * scale for at in times]
        return times

    def add_conversation(
        self,
        *,
        team,
        patient_id,
        person,
        channel,
        address,
        address_index,
        opted_out,
        size,
        status,
        age,
    ):
        """Rows of one conversation, its interactions and delivery records; returns
        when it started."""
        rng, context = self.rng, self.context
        pk = self.uuid()
        last_at = self.now - timedelta(seconds=age)
        matched = patient_id is not None
        assignee = None
        if status in (RESOLVED, SNOOZED) or rng.random() < (0.6 if matched else 0.3):
            assignee = rng.choice(team.agents)
        resolve_event = status == RESOLVED and size >= 3
        assign_event = assignee is not None and size - resolve_event >= 4
        count = size - resolve_event - assign_event
        directions = self._directions(count, status, matched)
        times = self._times(count, last_at, channel)
        fill = {
            **person,
            "doctor": rng.choice(DOCTORS),
            "med": rng.choice(MEDICATIONS),
            "symptom": rng.choice(SYMPTOMS),
            "day": rng.choice(DAYS),
            "time": rng.choice(TIMES),
        }

        interactions = self.rows[Interaction]
        last_direction, last_preview = "", ""
        last_inbound_at = last_staff_at = read_at = None
        sentiments = []
        assigned = not assign_event
        for position, (direction, at) in enumerate(zip(directions, times, strict=True)):
            author = None
            if direction != INBOUND:
                # Practice-initiated threads sometimes open with an automated reminder.
                automated = position == 0 and direction == OUTBOUND and rng.random() < 0.3
                if not automated:
                    author = assignee or rng.choice(team.agents)
                    if not assigned and author is assignee:
                        # Agents take a conversation just before answering it.
                        taken_at = at - timedelta(seconds=30)
                        self._event(
                            pk, patient_id, channel, author, f"assigned to {author[1]}", taken_at
                        )
                        assigned = True
            if direction == INTERNAL:
                kind = NOTE
            elif channel == VOICE:
                kind = VOICEMAIL if direction == INBOUND and rng.random() < 0.35 else CALL
            else:
                kind = MESSAGE
            body = self._body(channel, direction, kind, fill)
            interaction_pk = self.uuid()
            sentiment = None
            provider_id = ""
            if direction == INBOUND:
                sentiment = round(rng.uniform(-0.9, 0.95), 3)
                sentiments.append(sentiment)
                provider_id = f"syn-{channel}-{rng.getrandbits(96):024x}"
                last_inbound_at = at
            elif direction == OUTBOUND and author is not None:
                last_staff_at = at
            if author is not None and author is assignee:
                read_at = at
            interactions.append(
                (
                    interaction_pk,
                    pk,
                    patient_id,
                    channel,
                    kind,
                    direction,
                    _BODY.encrypt_value(body, pk=interaction_pk),
                    provider_id,
                    author[0] if author else None,
                    at,
                    at,
                    sentiment,
                    at + timedelta(seconds=2) if direction == INBOUND else None,
                    {},
                )
            )
            if direction == OUTBOUND and kind == MESSAGE:
                self._delivery(interaction_pk, channel, address, opted_out, at)
            last_direction = direction
            if body:
                last_preview = preview_of(body)
        if not assigned:
            self._event(pk, patient_id, channel, assignee, f"assigned to {assignee[1]}", times[0])
        updated_at, resolved_at = last_at, None
        if status == RESOLVED:
            resolved_at = min(self.now, last_at + timedelta(seconds=300 + rng.random() * 172_800))
            resolved_at = min(resolved_at, self.now - timedelta(seconds=1))
            if resolve_event:
                resolver = assignee or rng.choice(team.agents)
                self._event(
                    pk, patient_id, channel, resolver, "status open → resolved", resolved_at
                )
                if resolver is assignee:
                    read_at = resolved_at
            updated_at = resolved_at

        escalated = status == OPEN and rng.random() < 0.03
        if escalated:
            priority = rng.choice((2, 3))
        else:
            priority = rng.choices(PRIORITIES, cum_weights=PRIORITY_CUM_WEIGHTS)[0]
        first_due = next_due = None
        if status == OPEN and last_direction == INBOUND:
            if last_staff_at is None:
                first_due = times[0] + timedelta(hours=1)
            else:
                next_due = last_inbound_at + timedelta(hours=4)
        snoozed_until = None
        if status == SNOOZED:
            snoozed_until = self.now + timedelta(seconds=3_600 + rng.random() * 259_200)
        labels = sorted(rng.sample(LABELS, 1 + rng.randrange(2))) if rng.random() < 0.2 else []
        subject = rng.choice(SUBJECTS) if channel in (EMAIL_CHANNEL, PORTAL) else ""
        self.rows[Conversation].append(
            (
                pk,
                channel,
                team.accounts[channel],
                _CONVERSATION_FIELDS["contact_address"].encrypt_value(address, pk=pk),
                address_index,
                patient_id,
                team.id,
                assignee[0] if assignee else None,
                status,
                priority,
                _CONVERSATION_FIELDS["subject"].encrypt_value(subject, pk=pk),
                labels,
                snoozed_until,
                escalated,
                first_due,
                next_due,
                None,
                first_due or next_due,
                last_at,
                last_inbound_at,
                last_staff_at,
                last_direction,
                _CONVERSATION_FIELDS["last_preview"].encrypt_value(last_preview, pk=pk),
                sentiments[0] if sentiments else None,
                sentiments[-1] if sentiments else None,
                "",  # language: nothing detected yet
                base64.urlsafe_b64encode(rng.randbytes(18)).decode(),
                f"thread-{rng.getrandbits(64):016x}" if channel == PORTAL else "",
                times[0],
                updated_at,
                resolved_at,
            )
        )
        self.rows[ConversationGroupObjectPermission].append(
            (pk, team.group_id, context.conversation_permission_id)
        )
        if read_at is not None:
            self.rows[ConversationRead].append((pk, assignee[0], read_at))
        return times[0]

    def _event(self, conversation_pk, patient_id, channel, actor, change, at):
        """A timeline event as conversation_change() records it; events do not
        move the conversation's last interaction."""
        pk = self.uuid()
        text = f"{actor[1]}: {change}"
        self.rows[Interaction].append(
            (
                pk,
                conversation_pk,
                patient_id,
                channel,
                EVENT,
                INTERNAL,
                _BODY.encrypt_value(text, pk=pk),
                "",
                actor[0],
                at,
                at,
                None,
                None,
                {"change": change},
            )
        )

    def _delivery(self, interaction_pk, channel, address, opted_out, at):
        rng = self.rng
        state, error, provider_status = DELIVERED, "", "delivered"
        if opted_out:
            state, error = FAILED_DELIVERY[0]
            provider_status = ""
        elif rng.random() < 0.03:
            state, error = rng.choice(FAILED_DELIVERY)
            provider_status = "undelivered"
        elif rng.random() < 0.04:
            state, provider_status = SENT, "sent"
        pk = self.uuid()
        self.rows[OutboundMessage].append(
            (
                pk,
                interaction_pk,
                channel,
                _TO_ADDRESS.encrypt_value(address, pk=pk),
                state,
                0 if opted_out else 1,
                error,
                "" if opted_out else f"syn-{channel}-{rng.getrandbits(96):024x}",
                provider_status,
                None,
                at,
                at + timedelta(seconds=1 + rng.random() * 30),
            )
        )


_COLUMNS = {
    Patient: PATIENT_COLUMNS,
    PatientGroupObjectPermission: PERMISSION_COLUMNS,
    ContactPoint: CONTACT_COLUMNS,
    Conversation: CONVERSATION_COLUMNS,
    ConversationGroupObjectPermission: PERMISSION_COLUMNS,
    Interaction: INTERACTION_COLUMNS,
    OutboundMessage: OUTBOUND_COLUMNS,
    ConversationRead: READ_COLUMNS,
}


def _copy_statement(model):
    opts = model._meta
    return sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)").format(
        table=sql.Identifier(opts.db_table),
        columns=sql.SQL(", ").join(
            sql.Identifier(opts.get_field(name).column) for name in _COLUMNS[model]
        ),
    )


def _column_types(cursor, model):
    """The type oid of each COPY column, for binary COPY (PostgreSQL then parses no
    text: a UUID is 16 bytes and a timestamp 8, not strings to parse per row)."""
    types = _worker.setdefault("types", {})
    if model not in types:
        opts = model._meta
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [opts.db_table],
        )
        oids = dict(cursor.fetchall())
        types[model] = [oids[opts.get_field(name).column] for name in _COLUMNS[model]]
    return types[model]


def load_batch(batch):
    """Build one batch and COPY it in one transaction; returns rows per model."""
    number, entries = batch
    builder = _Batch(_worker["context"], number)
    teams = _worker["context"].teams
    for patient_index, team_index, plans in entries:
        if patient_index is None:
            builder.add_unmatched(teams[team_index], plans[0])
        else:
            builder.add_patient(patient_index, teams[team_index], plans)
    with transaction.atomic(), connection.cursor() as cursor:
        # A batch lost in a crash is a seed to run again: no need to wait for its
        # WAL flush at every commit.
        cursor.execute("SET LOCAL synchronous_commit = off")
        for model, rows in builder.rows.items():
            if rows:
                types = _column_types(cursor, model)
                with cursor.copy(_copy_statement(model)) as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
    return {model._meta.label: len(rows) for model, rows in builder.rows.items()}


# --- Indexes and constraints built once, after the load --------------------------
#
# Loading into empty tables, keeping 40-odd B-trees up to date row by row (most
# keyed on random UUIDs, so every insert lands on a random page) and checking every
# foreign key row by row costs PostgreSQL far more than building each index once
# from sorted data and validating each foreign key with one join. So a load into
# empty tables drops the loaded tables' indexes, keys and foreign keys (and the
# foreign keys pointing at them) first and puts back the very same definitions
# (pg_get_indexdef, pg_get_constraintdef) at the end: the same unique and
# foreign-key checks, over the whole data set at once. The statements that put them
# back are kept in DEFERRED_DDL_TABLE until they have run, so a seed that died in
# between is repaired by the next one before it does anything else.

DEFERRED_DDL_TABLE = "bench_seed_deferred_ddl"

_FOREIGN_KEYS_SQL = """
SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', conrelid::regclass, conname),
       format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', conrelid::regclass, conname,
              pg_get_constraintdef(oid))
FROM pg_constraint
WHERE contype = 'f' AND (conrelid = ANY(%(tables)s::regclass[])
                         OR confrelid = ANY(%(tables)s::regclass[]))
ORDER BY conrelid::regclass::text, conname
"""
_KEYS_SQL = """
SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', conrelid::regclass, conname),
       format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', conrelid::regclass, conname,
              pg_get_constraintdef(oid))
FROM pg_constraint
WHERE contype IN ('p', 'u') AND conrelid = ANY(%(tables)s::regclass[])
ORDER BY conrelid::regclass::text, conname
"""
_INDEXES_SQL = """
SELECT format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid),
       c.relname
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ANY(%(tables)s::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
ORDER BY i.indrelid::regclass::text, i.indexrelid::regclass::text
"""


def _loaded_tables():
    return [model._meta.db_table for model in _COLUMNS]


def _tables_empty():
    with connection.cursor() as cursor:
        for table in _loaded_tables():
            cursor.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(table)))
            if cursor.fetchone()[0]:
                return False
    return True


def restore_deferred():
    """Build the indexes and add the constraints a seed dropped, if any are
    pending; returns how many statements ran."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEFERRED_DDL_TABLE])
        if not cursor.fetchone()[0]:
            return 0
    with transaction.atomic(), connection.cursor() as cursor:
        # Sorts for the index builds in memory rather than in temporary files.
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute(
            sql.SQL("SELECT statement FROM {} ORDER BY position").format(
                sql.Identifier(DEFERRED_DDL_TABLE)
            )
        )
        statements = [row[0] for row in cursor.fetchall()]
        for statement in statements:
            cursor.execute(statement)
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(DEFERRED_DDL_TABLE)))
    return len(statements)


def _model_index_sql():
    """{name: CREATE INDEX statement} of the indexes the loaded models declare
    (Meta.indexes, and the unique constraints with a condition, which are
    indexes), as the migrations wrote them. pg_get_indexdef does not give back a
    condition's text as written (`status IN (...)` comes back with its casts moved),
    so these are rebuilt from the models; the others from pg_get_indexdef."""
    editor = connection.schema_editor()
    statements = {}
    for model in _COLUMNS:
        for index in model._meta.indexes:
            statements[index.name] = str(index.create_sql(model, editor))
        for constraint in model._meta.constraints:
            if isinstance(constraint, UniqueConstraint) and constraint.condition is not None:
                statements[constraint.name] = str(constraint.create_sql(model, editor))
    return statements


def _defer_indexes():
    """Drop the loaded tables' indexes and constraints, recording how to put them
    back (indexes first, then keys, then the foreign keys that need those keys)."""
    params = {"tables": _loaded_tables()}
    declared = _model_index_sql()
    with transaction.atomic(), connection.cursor() as cursor:
        found = {}
        for name, query in (
            ("foreign keys", _FOREIGN_KEYS_SQL),
            ("keys", _KEYS_SQL),
        ):
            cursor.execute(query, params)
            found[name] = cursor.fetchall()
        cursor.execute(_INDEXES_SQL, params)
        found["indexes"] = [
            (drop, declared.get(index_name, definition))
            for drop, definition, index_name in cursor.fetchall()
        ]
        restore = [
            create for name in ("indexes", "keys", "foreign keys") for _, create in found[name]
        ]
        cursor.execute(
            sql.SQL("CREATE TABLE {} (position integer PRIMARY KEY, statement text)").format(
                sql.Identifier(DEFERRED_DDL_TABLE)
            )
        )
        with cursor.copy(
            sql.SQL("COPY {} (position, statement) FROM STDIN").format(
                sql.Identifier(DEFERRED_DDL_TABLE)
            )
        ) as copy:
            for position, statement in enumerate(restore):
                copy.write_row((position, statement))
        for name in ("foreign keys", "keys", "indexes"):
            for drop, _ in found[name]:
                cursor.execute(drop)


@contextmanager
def _indexes_built_after(defer):
    """Within it the loaded tables have no index or constraint when `defer`; they
    are rebuilt on the way out, whether the load finished or not."""
    if not defer:
        yield
        return
    _defer_indexes()
    try:
        yield
    finally:
        restore_deferred()


# --- The command -------------------------------------------------------------------


class SeedError(Exception):
    """The arguments or the database refuse the seed (said to the user as is)."""


def seed(
    *,
    patients,
    interactions,
    teams=8,
    big_team_open=20_000,
    seed=1,
    workers=2,
    append=False,
    verbosity=1,
    stdout=sys.stdout,
    stderr=sys.stderr,
):
    """Load a synthetic data set (teams, staff, patients, conversations,
    interactions), encrypted as in production, with COPY. Refuses a database that
    already holds patients or conversations unless `append`."""
    n_patients, n_interactions, n_teams = patients, interactions, teams
    if n_patients < 1 or n_interactions < 0 or n_teams < 1 or workers < 1:
        raise SeedError("--patients, --teams and --workers must be at least 1.")
    if big_team_open < 0:
        raise SeedError("--big-team-open cannot be negative.")
    if connection.vendor != "postgresql":
        raise SeedError("seed_synthetic loads with PostgreSQL COPY; point DATABASE_URL at one.")
    # An earlier seed that died between dropping and rebuilding its indexes left
    # their statements behind: the database gets its indexes back first.
    restore_deferred()
    if not append and (
        Patient.objects.exists() or Conversation.objects.exists() or Interaction.objects.exists()
    ):
        raise SeedError(
            "The database already holds patients or conversations; seed an empty one, "
            "or pass --append to add a second synthetic set to it."
        )
    if workers > 1 and connection.in_atomic_block:
        raise SeedError(
            "--workers above 1 load over their own connections, which cannot see this "
            "transaction; use --workers 1 inside a transaction."
        )
    started = time.perf_counter()
    # Loading into empty tables from a connection of its own (not a caller's
    # transaction, as the tests' are), the indexes are built once at the end.
    defer = not connection.in_atomic_block and _tables_empty()
    rng = random.Random(seed)
    team_infos = _teams(n_teams)
    context = Context(
        seed=seed,
        now_ts=timezone.now().timestamp(),
        mrn_offset=Patient.objects.count(),
        teams=team_infos,
        patient_permission_id=_permission_id(Patient, VIEW_PATIENT),
        conversation_permission_id=_permission_id(Conversation, VIEW_CONVERSATION),
    )
    plan = make_plan(
        rng=rng,
        n_patients=n_patients,
        n_interactions=n_interactions,
        n_teams=n_teams,
        big_team_open=big_team_open,
    )
    batches = make_batches(plan)
    planned = time.perf_counter()
    big = plan.status_counts(team=0)
    if big[OPEN] < big_team_open:
        stderr.write(
            f"The big team has only {big[OPEN]} open conversations: there are not enough "
            "interactions for --big-team-open; raise --interactions or lower it."
        )

    totals = {}
    with _indexes_built_after(defer):
        with (
            _loader(context, workers) as run,
            tqdm(
                total=n_interactions,
                unit=" interactions",
                unit_scale=True,
                desc="seed_synthetic",
                disable=verbosity == 0,
                file=sys.stderr,
            ) as progress,
        ):
            for result in run(batches):
                progress.update(result.get(Interaction._meta.label, 0))
                for label, count in result.items():
                    totals[label] = totals.get(label, 0) + count
        loaded = time.perf_counter()
    indexed = time.perf_counter()
    with connection.cursor() as cursor:
        for model in _COLUMNS:
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(model._meta.db_table)))
    finished = time.perf_counter()

    statuses = plan.status_counts()
    stdout.write(
        f"Seeded {totals.get(Patient._meta.label, 0):,} patients "
        f"({totals.get(ContactPoint._meta.label, 0):,} contact points), "
        f"{totals.get(Conversation._meta.label, 0):,} conversations "
        f"({', '.join(f'{status} {count:,}' for status, count in statuses.items())}), "
        f"{totals.get(Interaction._meta.label, 0):,} interactions, "
        f"{totals.get(OutboundMessage._meta.label, 0):,} delivery records, "
        f"{totals.get(ConversationRead._meta.label, 0):,} read markers in {n_teams} teams."
    )
    stdout.write(
        f"Big team {BIG_TEAM_NAME!r}: {big[OPEN]:,} open and {big[PENDING]:,} pending "
        f"conversations; heaviest patient {max(map(_size, plan.patient_conversations)):,} "
        "interactions."
    )
    stdout.write(
        f"Took {finished - started:.1f} s: plan {planned - started:.1f} s, load "
        f"{loaded - planned:.1f} s with {workers} worker(s) "
        f"({n_interactions / max(loaded - planned, 1e-9):,.0f} interactions/s), "
        f"indexes and constraints {indexed - loaded:.1f} s"
        f"{'' if defer else ' (kept up during the load: the tables were not empty)'}, "
        f"analyze {finished - indexed:.1f} s."
    )


def _teams(n_teams):
    """The big team first; each team with its agents, a supervisor and a channel
    account per channel. Found by name, so --append reuses them."""
    teams = []
    for number in range(n_teams):
        name = BIG_TEAM_NAME if number == 0 else TEAM_NAME.format(number)
        label = "big" if number == 0 else f"t{number:02d}"
        team = team_create(name=name)
        agents = tuple(
            staff_create(username=f"synth-{label}-agent-{k:02d}", role=roles.AGENT, teams=[team])
            for k in range(1, (BIG_TEAM_AGENTS if number == 0 else TEAM_AGENTS) + 1)
        )
        staff_create(username=f"synth-{label}-supervisor", role=roles.SUPERVISOR, teams=[team])
        addresses = {
            Channel.SMS: f"+1202555{number:04d}",
            Channel.VOICE: f"+1202555{number:04d}",
            Channel.EMAIL: f"{label}@synthetic.example.org",
            Channel.PORTAL: f"https://portal.synthetic.example.org/teams/{label}",
        }
        accounts = {}
        for channel, address in addresses.items():
            account, _ = ChannelAccount.objects.get_or_create(
                kind=channel,
                address=address,
                defaults={"name": f"{name} ({channel})", "team": team},
            )
            accounts[channel.value] = account.pk
        teams.append(
            TeamInfo(
                id=team.pk,
                group_id=team.group_id,
                agents=tuple((user.pk, user.get_username()) for user in agents),
                accounts=accounts,
            )
        )
    return tuple(teams)


@contextmanager
def _loader(context, workers):
    """A function mapping load_batch over batches: in this process for one worker,
    else over a pool whose results arrive as batches finish."""
    if workers == 1:
        _start_worker(context)
        yield functools.partial(map, load_batch)
        return
    # Forked workers must not share this process's socket to PostgreSQL: each opens
    # its own, and this process reconnects when it next queries.
    connections.close_all()
    pool = multiprocessing.get_context("fork").Pool(
        workers, initializer=_start_pool_worker, initargs=(context,)
    )
    try:
        yield functools.partial(pool.imap_unordered, load_batch)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _permission_id(model, codename):
    return Permission.objects.get(
        content_type=ContentType.objects.get_for_model(model), codename=codename
    ).pk


def _size(conversations):
    return sum(item[0] for item in conversations)


def main():
    import argparse

    parser = argparse.ArgumentParser(description=seed.__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--teams", type=int, default=8, help="Teams in all, the big one included.")
    parser.add_argument(
        "--big-team-open",
        type=int,
        default=20_000,
        help="Open conversations of the big team (plus 10%% pending).",
    )
    parser.add_argument("--seed", type=int, default=1, help="Same seed, same data set.")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Processes building and loading batches; 1 loads in this process and its transaction.",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="Add to a database that already holds patients or conversations.",
    )
    parser.add_argument("--verbosity", type=int, default=1)
    options = vars(parser.parse_args())
    try:
        seed(**options)
    except SeedError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
