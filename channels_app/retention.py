"""What channels_app keeps and for how long (compliance.retention runs the purge).

- raw_events: what providers sent, kept for replaying a webhook; deleted.
- recordings: a call's recording link and its transcript; shredded, the call row
  (times, queue result, duration) stays for reporting.
- messages: the text of every interaction and what travels with it (quoted email
  text, attachments, the conversation's subject and preview); shredded, the rows
  stay so that volumes and response times still count.

Ages count from when a row was stored (created_at, received_at), not from when the
provider says it happened: an old email imported today is kept its full term, and
no row can be stored behind a purge checkpoint. A voicemail's transcript is also
its interaction's body, which is a message and follows the messages retention.
"""

from django.db.models import Q

from channels_app.models import (
    Attachment,
    CallDetail,
    Conversation,
    EmailDetail,
    Interaction,
    RawEvent,
)
from compliance.retention import delete_rows, register_retention, shred_fields


def _purge_recordings(pks, *, cutoff):
    shredded = shred_fields(CallDetail, pks, ["recording_url", "transcript"])
    # The provider's recording id names a recording that no longer has a link here.
    CallDetail.objects.filter(pk__in=pks).update(recording_sid="")
    return shredded


def _purge_messages(pks, *, cutoff):
    shredded = shred_fields(Interaction, pks, ["body"])
    emails = list(EmailDetail.objects.filter(pk__in=pks).values_list("pk", flat=True))
    shred_fields(EmailDetail, emails, ["quoted_text"])
    attachments = list(
        Attachment.objects.filter(interaction_id__in=pks).values_list("pk", flat=True)
    )
    shred_fields(Attachment, attachments, ["filename", "content"])
    # A conversation's subject and preview repeat its messages; they go once its
    # last message is past retention too.
    quiet = list(
        Conversation.objects.filter(
            pk__in=Interaction.objects.filter(pk__in=pks).values("conversation_id"),
            last_interaction_at__lt=cutoff,
        ).values_list("pk", flat=True)
    )
    shred_fields(Conversation, quiet, ["subject", "last_preview"])
    return shredded


def register():
    register_retention(
        "raw_events",
        queryset_factory=RawEvent.objects.all,
        date_field="received_at",
        default_days=90,
        purge=delete_rows(RawEvent),
    )
    register_retention(
        "recordings",
        # Calls that had a recording or a transcript: both turn them into voicemails.
        queryset_factory=lambda: CallDetail.objects.filter(
            Q(interaction__kind=Interaction.Kind.VOICEMAIL) | ~Q(recording_sid="")
        ),
        date_field="interaction__created_at",
        default_days=365,
        purge=_purge_recordings,
    )
    register_retention(
        "messages",
        queryset_factory=Interaction.objects.all,
        date_field="created_at",
        default_days=2555,
        purge=_purge_messages,
    )
