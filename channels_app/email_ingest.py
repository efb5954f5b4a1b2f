"""Inbound email, from the webhook or IMAP: parse, thread, store once."""

import base64
import hashlib
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_app import accounts, services
from channels_app.email_parsing import EmailParseError, parse_email, thread_keys
from channels_app.models import Attachment, Conversation, EmailDetail, Interaction
from patients.models import Channel

logger = structlog.stdlib.get_logger(__name__)

PROVIDER_ID_MAX = Interaction._meta.get_field("provider_id").max_length


@dataclass(frozen=True)
class EmailIngestOutcome:
    created: bool
    interaction: Interaction | None = None
    error: str = ""
    raw_event_id: object = None


def _raw_payload(raw):
    return {"rfc822_base64": base64.b64encode(raw).decode()}


def _provider_id(message_id):
    """Message-IDs have no length limit; ids longer than the column are kept as a
    digest, which still recognises the same message delivered twice."""
    if len(message_id) <= PROVIDER_ID_MAX:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def _thread(parsed):
    """The conversation this message replies to: by the reply token in the address,
    or by Message-ID, In-Reply-To and References from the same sender; never by
    subject. A stranger who learns a Message-ID cannot write into a patient's
    thread: a reply from another address opens its own conversation."""
    if parsed.reply_token:
        found = Conversation.objects.filter(reply_token=parsed.reply_token).first()
        if found is not None:
            return found
    keys = [_provider_id(key) for key in thread_keys(parsed)]
    if not keys:
        return None
    try:
        _, sender_index = services.normalise_address(Channel.EMAIL, parsed.from_address)
    except ValueError:
        return None
    detail = (
        EmailDetail.objects.select_related("interaction__conversation")
        .filter(message_id__in=keys, interaction__conversation__contact_index=sender_index)
        .order_by("-interaction__occurred_at")
        .first()
    )
    return detail.interaction.conversation if detail else None


def _account_for(parsed, conversation):
    """The mailbox the message was sent to. With several mailboxes, mail to none
    of their addresses is kept unrouted rather than dropped into another team's
    inbox; with one, it is that one (aliases forward to it)."""
    if conversation is not None and conversation.account_id:
        return conversation.account
    recipients = {a.lower() for a in (*parsed.to_addresses, *parsed.cc_addresses)}
    mailboxes = accounts.accounts_of_kind(Channel.EMAIL)
    account = next((m for m in mailboxes if m.address in recipients), None)
    if account is not None:
        return account
    return mailboxes[0] if len(mailboxes) == 1 else None


def ingest_raw_email(*, raw, source):
    """Parse and store one RFC 5322 message. A message that cannot be parsed is
    kept as a raw event with the reason, so nothing is lost silently."""
    try:
        parsed = parse_email(
            raw,
            max_attachment_bytes=settings.EMAIL_ATTACHMENT_MAX_BYTES,
            reply_domain=settings.EMAIL_REPLY_DOMAIN,
        )
    except EmailParseError as exc:
        event = services.raw_event_record(
            source=f"{source}_unparseable", provider_id="", payload=_raw_payload(raw)
        )
        logger.warning("email_unparseable", raw_event_id=str(event.pk), reason=str(exc))
        return EmailIngestOutcome(created=False, error=str(exc), raw_event_id=event.pk)
    provider_id = _provider_id(parsed.message_id or "")
    # The webhook's transaction when it holds one (no savepoint), else its own.
    with transaction.atomic(savepoint=False):
        conversation = _thread(parsed)
        if conversation is not None and conversation.status == Conversation.Status.RESOLVED:
            # A reply to a resolved thread reopens it: same matter, same history.
            services.conversation_reopen(conversation=conversation)
        account = _account_for(parsed, conversation)
        if account is None:
            event = services.raw_event_record(
                source=f"{source}_unrouted", provider_id=provider_id, payload=_raw_payload(raw)
            )
            return EmailIngestOutcome(
                created=False,
                error="No mailbox is configured to receive email.",
                raw_event_id=event.pk,
            )
        opened = conversation is None
        if opened:
            normalised, index = services.normalise_address(Channel.EMAIL, parsed.from_address)
            patient = services.resolve_patient(channel=Channel.EMAIL, address=normalised)
            conversation = services.conversation_open(
                channel=Channel.EMAIL,
                team=patient.team if patient else account.team,
                account=account,
                patient=patient,
                contact_address=normalised,
                contact_index=index,
                subject=parsed.subject,
            )
        ingested = services.inbound_record(
            channel=Channel.EMAIL,
            account=account,
            address=parsed.from_address,
            body=parsed.new_text or parsed.body_text,
            provider_id=provider_id,
            # The sender's clock is not trusted into the future: a future Date
            # header would pin the conversation to the top of the inbox.
            occurred_at=min(parsed.date or timezone.now(), timezone.now()),
            source=source,
            raw_payload=_raw_payload(raw),
            conversation=conversation,
            opened=opened,
            metadata={
                "auto_reply": parsed.is_auto_reply,
                "attachments": len(parsed.attachments),
            },
        )
        if not ingested.created:
            return EmailIngestOutcome(created=False, interaction=ingested.interaction)
        EmailDetail.objects.create(
            interaction=ingested.interaction,
            message_id=provider_id,
            in_reply_to=parsed.in_reply_to or "",
            references=list(parsed.references),
            quoted_text=parsed.quoted_text,
            parse_problems=list(parsed.problems),
        )
        Attachment.objects.bulk_create(
            [
                Attachment(
                    interaction=ingested.interaction,
                    filename=attachment.filename,
                    content_type=attachment.content_type[:127],
                    size=attachment.size,
                    content=base64.b64encode(attachment.content).decode()
                    if attachment.content is not None
                    else None,
                    rejected_reason=attachment.rejected_reason or "",
                )
                for attachment in parsed.attachments
            ]
        )
    return EmailIngestOutcome(created=True, interaction=ingested.interaction)
