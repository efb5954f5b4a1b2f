"""Inbound email from IMAP mailboxes. Each practice mailbox with an IMAP host is
read from where its cursor stopped, and every new message goes through the same
ingest as the webhook, so a message reaching us both ways is stored once (by its
Message-ID)."""

import ssl
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from channels_app import email_ingest
from channels_app.models import ChannelAccount, ImapCursor
from patients.models import Channel

logger = structlog.stdlib.get_logger(__name__)

IMAP_TIMEOUT_SECONDS = 30
FETCH_BATCH_SIZE = 20
# A mailbox with a large backlog is drained over several beat runs, so one run
# stays well inside the task time limit.
MAX_MESSAGES_PER_POLL = 400


class ImapPollError(Exception):
    """A mailbox could not be read. The message names the account and the cause,
    never a message's content."""


@dataclass(frozen=True)
class ImapPollResult:
    account_id: object
    stored: int = 0
    busy: bool = False
    error: str = ""


def imap_accounts():
    return (
        ChannelAccount.objects.filter(kind=Channel.EMAIL, active=True)
        .exclude(imap_host="")
        .order_by("pk")
    )


def imap_poll_all():
    """Poll every IMAP mailbox. One that fails (a changed password, a server that
    is down) is logged and the others are still polled."""
    results = []
    for account in imap_accounts():
        try:
            results.append(imap_poll_account(account=account))
        except ImapPollError as exc:
            logger.error("imap_poll_failed", account_id=str(account.pk), error=str(exc))
            results.append(ImapPollResult(account_id=account.pk, error=str(exc)))
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            logger.exception("imap_poll_crashed", account_id=str(account.pk))
            results.append(ImapPollResult(account_id=account.pk, error=exc.__class__.__name__))
    return results


@contextmanager
def _mailbox(account, *, timeout=IMAP_TIMEOUT_SECONDS):
    """An open, logged-in IMAP session on the account's folder (read-only):
    yields (client, the folder's UIDVALIDITY). Raises ImapPollError naming the
    step that failed: connecting, the login, or opening the folder."""
    try:
        client = IMAPClient(
            account.imap_host,
            port=account.imap_port,
            ssl=account.imap_use_ssl,
            ssl_context=ssl.create_default_context() if account.imap_use_ssl else None,
            timeout=timeout,
        )
    except (OSError, IMAPClientError) as exc:
        raise ImapPollError(
            f"mailbox {account.pk}: cannot connect to {account.imap_host}:{account.imap_port} "
            f"({exc.__class__.__name__})"
        ) from exc
    with client:
        try:
            client.login(account.imap_username or account.address, account.secret)
        except LoginError as exc:
            raise ImapPollError(
                f"mailbox {account.pk}: the IMAP server refused the login; "
                "check the mailbox's user name and password"
            ) from exc
        except (OSError, IMAPClientError) as exc:
            raise ImapPollError(
                f"mailbox {account.pk}: login failed ({exc.__class__.__name__})"
            ) from exc
        try:
            # Read-only (EXAMINE): fetching leaves the practice's \Seen flags alone.
            selected = client.select_folder(account.imap_folder, readonly=True)
            uidvalidity = int(selected[b"UIDVALIDITY"])
        except (OSError, IMAPClientError, KeyError) as exc:
            raise ImapPollError(
                f"mailbox {account.pk}: cannot open folder {account.imap_folder!r} "
                f"({exc.__class__.__name__})"
            ) from exc
        yield client, uidvalidity


def imap_poll_account(*, account):
    """Store what arrived in the account's IMAP folder since the last poll.
    Raises ImapPollError when the server cannot be reached or refuses the login;
    the cursor then stays where it was."""
    ImapCursor.objects.get_or_create(account=account)
    with _mailbox(account) as (client, uidvalidity):
        try:
            return _drain(client, account, uidvalidity)
        except (OSError, IMAPClientError) as exc:
            raise ImapPollError(
                f"mailbox {account.pk}: the IMAP connection failed while reading "
                f"({exc.__class__.__name__})"
            ) from exc


IMAP_CHECK_TIMEOUT_SECONDS = 10


def imap_check(*, account):
    """Whether the mailbox can be read now: connect, log in and open the folder, as
    the poller would, reading nothing. Returns (True, "") or (False, the reason);
    asked for by a person, never on save (a server down for a minute must not stop
    anyone from saving its settings)."""
    if account.kind != Channel.EMAIL or not account.imap_host:
        return False, "this account has no IMAP host"
    try:
        with _mailbox(account, timeout=IMAP_CHECK_TIMEOUT_SECONDS):
            return True, ""
    except ImapPollError as exc:
        return False, str(exc)


def _drain(client, account, uidvalidity):
    """Fetch and store new messages in rounds of FETCH_BATCH_SIZE. Each round holds
    the cursor row locked (a concurrent run skips the mailbox) and advances it
    after every stored message, so nothing is fetched twice and a failure loses
    nothing: the cursor never passes a message that was not stored."""
    stored = 0
    while stored < MAX_MESSAGES_PER_POLL:
        failure = None
        with transaction.atomic():
            cursor = (
                ImapCursor.objects.select_for_update(skip_locked=True)
                .filter(account=account)
                .first()
            )
            if cursor is None:
                logger.info("imap_mailbox_busy", account_id=str(account.pk))
                return ImapPollResult(account_id=account.pk, stored=stored, busy=True)
            if cursor.uidvalidity != uidvalidity:
                # The server numbered the folder anew: old UIDs mean nothing, so it
                # is read again from the start; ingest knows the stored messages
                # by their Message-ID.
                if cursor.uidvalidity:
                    logger.warning(
                        "imap_uidvalidity_changed",
                        account_id=str(account.pk),
                        old=cursor.uidvalidity,
                        new=uidvalidity,
                    )
                cursor.uidvalidity, cursor.last_uid = uidvalidity, 0
                cursor.save(update_fields=["uidvalidity", "last_uid", "updated_at"])
            # "n:*" always matches the highest UID, even when n is above it.
            pending = sorted(
                uid
                for uid in client.search(["UID", f"{cursor.last_uid + 1}:*"])
                if uid > cursor.last_uid
            )
            batch = pending[: min(FETCH_BATCH_SIZE, MAX_MESSAGES_PER_POLL - stored)]
            if not batch:
                break
            fetched = client.fetch(batch, ["RFC822"])
            for uid in batch:
                raw = fetched.get(uid, {}).get(b"RFC822")
                if raw is None:
                    # Expunged between SEARCH and FETCH, or not answered: the next
                    # poll searches again rather than skipping a message.
                    logger.warning("imap_message_missing", account_id=str(account.pk), uid=uid)
                    return ImapPollResult(account_id=account.pk, stored=stored)
                try:
                    with transaction.atomic():
                        email_ingest.ingest_raw_email(raw=raw, source="imap")
                except Exception as exc:
                    # Keep what this round stored; the failing message is read
                    # again by the next poll.
                    failure = exc
                    break
                cursor.last_uid = uid
                cursor.save(update_fields=["last_uid", "updated_at"])
                stored += 1
        if failure is not None:
            raise failure
        if len(pending) <= len(batch):
            break
    return ImapPollResult(account_id=account.pk, stored=stored)
