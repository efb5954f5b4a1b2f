"""IMAP polling through the real imapclient against a loopback IMAP4rev1 server
(tests/stubs/imap_stub.py): what is fetched, when, and where the cursor stands."""

import socket
import threading
import uuid
from email.message import EmailMessage
from email.utils import formatdate

import pytest
from django.db import DatabaseError, connection, transaction

from channels_app import email_ingest, imap
from channels_app.models import ChannelAccount, ImapCursor, Interaction, RawEvent
from config.celery import app as celery_app
from patients.models import Channel
from tests.factories import TeamFactory
from tests.stubs import fixtures as stub_fixtures

# The stub fixture this module uses; tests/conftest.py makes only the Twilio ones suite-wide.
imap_stub = stub_fixtures.imap_stub

ADDRESS = "care@practice.test"
PASSWORD = "imap-app-password"


@pytest.fixture
def team(db):
    return TeamFactory(name="Care team")


def make_mailbox(stub, team, *, address=ADDRESS, password=PASSWORD, **fields):
    """An email account polled over IMAP on the stub, and its user on the stub."""
    stub.add_user(address, password)
    defaults = {
        "kind": Channel.EMAIL,
        "name": address,
        "address": address,
        "team": team,
        "secret": password,
        "imap_host": "127.0.0.1",
        "imap_port": stub.port,
        "imap_use_ssl": False,
        "imap_username": address,
    }
    return ChannelAccount.objects.create(**{**defaults, **fields})


@pytest.fixture
def refused_port():
    """A loopback port that is bound but not listening: a connection is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def mailbox(imap_stub, team):
    return make_mailbox(imap_stub, team)


def patient_email(n, *, to=ADDRESS):
    message = EmailMessage()
    message["From"] = "Pat Doe <pat.doe@example.com>"
    message["To"] = to
    message["Subject"] = f"Question {n}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<imap-{n}-{uuid.uuid4().hex}@mail.example.com>"
    message.set_content(f"This is message number {n}.")
    return message.as_bytes()


def deliver(stub, count, *, start=1, user=ADDRESS):
    return [stub.add_message(patient_email(n), user=user) for n in range(start, start + count)]


def fetched_uids(stub, user=ADDRESS):
    uids = []
    for command in stub.commands_named("UID FETCH", user=user):
        uids.extend(int(uid) for uid in command.args[0].split(","))
    return uids


def cursor_of(account):
    return ImapCursor.objects.get(account=account)


def log_events(caplog, name):
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == name]


def test_first_poll_stores_every_message_of_the_folder(imap_stub, mailbox):
    uids = deliver(imap_stub, 3)

    result = imap.imap_poll_account(account=mailbox)

    assert result.stored == 3
    assert sorted(fetched_uids(imap_stub)) == uids
    assert Interaction.objects.filter(channel=Channel.EMAIL).count() == 3
    assert RawEvent.objects.filter(source="imap").count() == 3
    cursor = cursor_of(mailbox)
    assert cursor.last_uid == uids[-1]
    assert cursor.uidvalidity == imap_stub.folder(user=ADDRESS).uidvalidity
    [examine] = imap_stub.commands_named("EXAMINE")
    assert examine.args == ("INBOX",)
    assert not imap_stub.commands_named("SELECT")


def test_messages_are_fetched_in_batches_of_twenty(imap_stub, mailbox):
    deliver(imap_stub, 45)

    imap.imap_poll_account(account=mailbox)

    batches = [len(c.args[0].split(",")) for c in imap_stub.commands_named("UID FETCH")]
    assert batches == [20, 20, 5]
    assert Interaction.objects.count() == 45


def test_second_poll_fetches_nothing_although_the_server_answers_the_last_uid(
    imap_stub,
    mailbox,
):
    uids = deliver(imap_stub, 2)
    imap.imap_poll_account(account=mailbox)
    imap_stub.clear_commands()

    result = imap.imap_poll_account(account=mailbox)

    [search] = imap_stub.commands_named("UID SEARCH")
    assert search.args == ("UID", f"{uids[-1] + 1}:*")
    assert not imap_stub.commands_named("UID FETCH")
    assert result.stored == 0
    assert Interaction.objects.count() == 2


def test_a_new_message_is_the_only_one_fetched_by_the_next_poll(imap_stub, mailbox):
    deliver(imap_stub, 3)
    imap.imap_poll_account(account=mailbox)
    imap_stub.clear_commands()
    [new_uid] = deliver(imap_stub, 1, start=4)

    result = imap.imap_poll_account(account=mailbox)

    assert fetched_uids(imap_stub) == [new_uid]
    assert result.stored == 1
    assert cursor_of(mailbox).last_uid == new_uid
    assert Interaction.objects.count() == 4


def test_changed_uidvalidity_reads_the_folder_again_and_stores_no_duplicates(
    imap_stub,
    mailbox,
    caplog,
):
    deliver(imap_stub, 3)
    imap.imap_poll_account(account=mailbox)
    old_validity = cursor_of(mailbox).uidvalidity
    new_validity = imap_stub.change_uidvalidity(user=ADDRESS)
    deliver(imap_stub, 1, start=4)
    imap_stub.clear_commands()

    imap.imap_poll_account(account=mailbox)

    assert sorted(fetched_uids(imap_stub)) == [1, 2, 3, 4]
    assert Interaction.objects.count() == 4
    cursor = cursor_of(mailbox)
    assert (cursor.uidvalidity, cursor.last_uid) == (new_validity, 4)
    [changed] = log_events(caplog, "imap_uidvalidity_changed")
    assert (changed["old"], changed["new"]) == (old_validity, new_validity)


def test_wrong_password_raises_a_clear_error_and_leaves_the_cursor_untouched(
    imap_stub,
    mailbox,
):
    deliver(imap_stub, 2)
    imap.imap_poll_account(account=mailbox)
    before = cursor_of(mailbox)
    deliver(imap_stub, 1, start=3)
    mailbox.secret = "not-the-password"
    mailbox.save()
    imap_stub.clear_commands()

    with pytest.raises(imap.ImapPollError, match=r"refused the login.*user name and password"):
        imap.imap_poll_account(account=mailbox)

    after = cursor_of(mailbox)
    assert (after.uidvalidity, after.last_uid, after.updated_at) == (
        before.uidvalidity,
        before.last_uid,
        before.updated_at,
    )
    assert not imap_stub.commands_named("UID FETCH")
    assert Interaction.objects.count() == 2


def test_a_failing_mailbox_is_logged_and_the_others_are_still_polled(
    imap_stub,
    team,
    caplog,
):
    # Polled in primary key order: the failing mailbox comes first.
    failing = make_mailbox(imap_stub, team, address="billing@practice.test", id=uuid.UUID(int=1))
    failing.secret = "changed-on-the-server"
    failing.save()
    working = make_mailbox(imap_stub, team, id=uuid.UUID(int=2))
    deliver(imap_stub, 2, user="billing@practice.test")
    deliver(imap_stub, 2)

    results = imap.imap_poll_all()

    assert [(r.account_id, r.stored, bool(r.error)) for r in results] == [
        (failing.pk, 0, True),
        (working.pk, 2, False),
    ]
    [failed] = log_events(caplog, "imap_poll_failed")
    assert failed["account_id"] == str(failing.pk)
    assert "refused the login" in failed["error"]
    assert failed["level"] == "error"
    assert Interaction.objects.count() == 2
    assert not ImapCursor.objects.get(account=failing).last_uid


def test_unreachable_server_raises_a_clear_error(team, refused_port):
    account = ChannelAccount.objects.create(
        kind=Channel.EMAIL,
        name="Care",
        address=ADDRESS,
        team=team,
        secret=PASSWORD,
        imap_host="127.0.0.1",
        imap_port=refused_port,
        imap_use_ssl=False,
    )

    with pytest.raises(imap.ImapPollError, match=r"cannot connect to 127\.0\.0\.1"):
        imap.imap_poll_account(account=account)


def test_only_active_email_accounts_with_an_imap_host_are_polled(
    imap_stub,
    team,
):
    polled = make_mailbox(imap_stub, team)
    make_mailbox(imap_stub, team, address="old@practice.test", active=False)
    make_mailbox(imap_stub, team, address="hook@practice.test", imap_host="")

    assert list(imap.imap_accounts()) == [polled]


def test_a_failure_mid_batch_keeps_what_was_stored_and_the_next_poll_resumes_there(
    imap_stub,
    mailbox,
    monkeypatch,
):
    uids = deliver(imap_stub, 5)
    real_ingest = email_ingest.ingest_raw_email
    calls = []

    def ingest_failing_on_the_third(**kwargs):
        calls.append(kwargs)
        if len(calls) == 3:
            raise DatabaseError("the database went away")
        return real_ingest(**kwargs)

    monkeypatch.setattr(email_ingest, "ingest_raw_email", ingest_failing_on_the_third)
    with pytest.raises(DatabaseError):
        imap.imap_poll_account(account=mailbox)

    assert cursor_of(mailbox).last_uid == uids[1]
    assert Interaction.objects.count() == 2
    monkeypatch.setattr(email_ingest, "ingest_raw_email", real_ingest)
    imap_stub.clear_commands()

    imap.imap_poll_account(account=mailbox)

    assert sorted(fetched_uids(imap_stub)) == uids[2:]
    assert Interaction.objects.count() == 5
    assert cursor_of(mailbox).last_uid == uids[-1]


@pytest.mark.django_db(transaction=True)
def test_a_mailbox_another_run_is_reading_is_skipped_without_fetching(imap_stub):
    mailbox = make_mailbox(imap_stub, TeamFactory(name="Care team"))
    deliver(imap_stub, 2)
    ImapCursor.objects.create(account=mailbox)
    locked, release = threading.Event(), threading.Event()

    def other_run_holding_the_cursor():
        try:
            with transaction.atomic():
                ImapCursor.objects.select_for_update().get(account=mailbox)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=other_run_holding_the_cursor)
    holder.start()
    try:
        assert locked.wait(10)
        result = imap.imap_poll_account(account=mailbox)
    finally:
        release.set()
        holder.join()

    assert result.busy
    assert not imap_stub.commands_named("UID SEARCH")
    assert not imap_stub.commands_named("UID FETCH")
    assert not Interaction.objects.exists()
    assert imap.imap_poll_account(account=mailbox).stored == 2


def test_the_same_message_from_imap_and_the_webhook_is_stored_once(
    imap_stub,
    mailbox,
):
    raw = patient_email(1)
    email_ingest.ingest_raw_email(raw=raw, source="email_webhook")
    imap_stub.add_message(raw, user=ADDRESS)

    imap.imap_poll_account(account=mailbox)

    assert Interaction.objects.count() == 1
    assert cursor_of(mailbox).last_uid == 1


def test_the_poll_task_runs_on_the_inbound_queue_every_minute(settings):
    from channels_app.tasks import inbound_poll_imap

    entry = settings.CELERY_BEAT_SCHEDULE["poll-imap"]

    assert entry == {
        "task": inbound_poll_imap.name,
        "schedule": 60.0,
        "options": {"expires": 60},
    }
    assert inbound_poll_imap.name == "channels_app.tasks.inbound_poll_imap"
    assert celery_app.amqp.router.route({}, inbound_poll_imap.name)["queue"].name == "inbound"


def test_the_poll_task_polls_every_mailbox(imap_stub, mailbox):
    from channels_app.tasks import inbound_poll_imap

    deliver(imap_stub, 2)

    inbound_poll_imap()

    assert Interaction.objects.count() == 2


def test_an_unparseable_message_is_kept_as_a_raw_event_and_the_cursor_moves_past_it(
    imap_stub, mailbox
):
    imap_stub.add_message(b"\x00\x01 not an email", user=ADDRESS)
    deliver(imap_stub, 1, start=2)

    result = imap.imap_poll_account(account=mailbox)

    assert result.stored == 2
    assert RawEvent.objects.get(interaction__isnull=True).source == "imap_unparseable"
    assert Interaction.objects.count() == 1
    assert cursor_of(mailbox).last_uid == 2
