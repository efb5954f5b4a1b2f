from celery.signals import worker_init
from django.dispatch import receiver

from escalation.signals import inbound_analysing, inbound_processed
from understanding import classifier, language, services


@receiver(inbound_analysing)
def analyse_inbound(sender, *, interaction, conversation, **kwargs):
    # Writes nothing: the follow-up stores the decision with its action.
    services.interaction_analyse(interaction=interaction, conversation=conversation)


@receiver(inbound_processed)
def follow_up_inbound(sender, *, interaction, conversation, escalated, **kwargs):
    services.interaction_follow_up(
        interaction=interaction, conversation=conversation, escalated=escalated
    )


@worker_init.connect
def load_models_before_the_pool_forks(sender=None, **kwargs):
    """A Celery worker's main process loads the intent model and the language
    identifier once, before its pool forks: the children share them instead of each
    spending seconds (joblib, scikit-learn's imports) on its first message. A pool
    that does not fork (solo, threads) loads them on first use, as before."""
    pool = getattr(sender, "pool_cls", "")
    if "prefork" not in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        return
    classifier.model()
    language.identifier()
