import structlog
from django.dispatch import receiver

from channels_app.signals import conversation_resolved, interaction_received
from reporting import services

logger = structlog.stdlib.get_logger(__name__)


@receiver(conversation_resolved)
def schedule_survey(sender, *, conversation, actor=None, **kwargs):
    # A survey rates how staff handled the matter: a conversation the system
    # closed (a survey answer with nothing else in it) had no one to rate.
    if actor is None:
        return
    # Sent after the resolution committed, inside the staff request: a failure
    # here must not turn a resolution that happened into an error for the user.
    try:
        services.survey_schedule(conversation=conversation)
    except Exception as exc:
        logger.warning(
            "survey_schedule_failed",
            conversation_id=str(conversation.pk),
            error=exc.__class__.__name__,
        )


@receiver(interaction_received)
def record_survey_reply(sender, *, interaction, **kwargs):
    # Errors propagate: the inbound worker then leaves the interaction
    # unprocessed and the channels sweeper sends it again.
    services.survey_reply_record(interaction=interaction)
