"""The local outbox's email backend (EMAIL_URL=localoutbox://, the default of
`make run`): each message is kept in the local outbox instead of leaving the
machine, and reported delivered like the local SMS provider's messages."""

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import make_msgid

from patients.models import Channel


class EmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        from channels_app.services import local_outbox_record

        for message in email_messages:
            # The id the delivery record stores as the provider id (see adapters/email.py).
            message_id = message.extra_headers.get("Message-ID") or make_msgid()
            local_outbox_record(
                channel=Channel.EMAIL,
                provider_id=message_id.strip("<>"),
                from_address=message.from_email,
                to_address=", ".join(message.recipients()),
                subject=message.subject,
                body=message.body,
            )
        return len(email_messages)
