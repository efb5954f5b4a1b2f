import smtplib

from django.conf import settings
from django.core.mail import EmailMessage

from channels_app.adapters import register
from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult
from channels_app.email_parsing import build_reply_headers
from channels_app.models import EmailDetail
from patients.models import Channel


def reply_address(conversation):
    """Replies come back to this address, so they thread even when a mail client
    drops the References header."""
    return f"reply+{conversation.reply_token}@{settings.EMAIL_REPLY_DOMAIN}"


@register(Channel.EMAIL)
class EmailAdapter(ChannelAdapter):
    def send(self, outbound):
        interaction = outbound.interaction
        conversation = interaction.conversation
        parent = (
            EmailDetail.objects.filter(interaction__conversation=conversation)
            .exclude(interaction=interaction)
            .order_by("-interaction__occurred_at")
            .first()
        )
        headers = build_reply_headers(
            own_message_id_domain=settings.EMAIL_REPLY_DOMAIN,
            parent_message_id=parent.message_id if parent else None,
            parent_references=parent.references if parent else None,
        )
        subject = conversation.subject or f"Message from {settings.PRACTICE_NAME}"
        if parent and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        from_address = (
            conversation.account.address if conversation.account else settings.DEFAULT_FROM_EMAIL
        )
        message = EmailMessage(
            subject=subject,
            body=interaction.body,
            from_email=f"{settings.PRACTICE_NAME} <{from_address}>",
            to=[outbound.to_address],
            reply_to=[reply_address(conversation)],
            headers=headers,
        )
        try:
            message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            # 4xx (greylisting, a full mailbox) is worth retrying; 5xx is final.
            permanent = all(code >= 500 for code in codes)
            raise AdapterError(f"smtp recipient refused {codes}", permanent=permanent) from None
        except smtplib.SMTPResponseException as exc:
            raise AdapterError(
                f"smtp {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise AdapterError(f"smtp {exc.__class__.__name__}", permanent=False) from None
        message_id = headers["Message-ID"].strip("<>")
        EmailDetail.objects.update_or_create(
            interaction=interaction,
            defaults={
                "message_id": message_id,
                "in_reply_to": headers.get("In-Reply-To", "").strip("<>"),
                "references": [r.strip("<>") for r in headers.get("References", "").split()],
            },
        )
        return DeliveryResult(provider_id=message_id, provider_status="sent")
