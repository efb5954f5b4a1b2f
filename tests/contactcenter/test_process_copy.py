"""Configuration kept in each process (contactcenter.process_copy): a change is seen
at once where it was made, by every other process within `check_seconds` (the
generation in the real Redis), and within `max_age_seconds` with Redis down."""

import pytest
from django.test import override_settings

from channels_app.models import Conversation
from contactcenter.process_copy import ProcessCopy
from escalation import selectors as escalation_selectors
from escalation import services as escalation_services
from escalation.models import EscalationRule, SlaPolicy
from fhir import services as fhir_services
from fhir.models import Subscription
from tests.factories import TeamFactory, make_api_key, make_patient

pytestmark = pytest.mark.django_db

URGENT = Conversation.Priority.URGENT
RULE = {"conditions": {"phrases": ["chest pain"]}, "actions": {"set_priority": "urgent"}}


@pytest.fixture
def team():
    return TeamFactory(name="North")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def rule_names(copy):
    return [rule.name for rule in copy.get()]


def another_process(clock):
    """The rules' copy as another worker process holds it: the same name (so the
    same generation in Redis), its own rows and its own clock."""
    return ProcessCopy(
        "escalation_rules",
        lambda: tuple(EscalationRule.objects.filter(active=True).order_by("order", "id")),
        clock=clock,
    )


def test_a_rule_saved_here_is_used_at_once(django_capture_on_commit_callbacks):
    before = [rule.name for rule in escalation_selectors.active_rules()]
    with django_capture_on_commit_callbacks(execute=True):
        escalation_services.rule_create(name="Chest pain", **RULE)

    assert [rule.name for rule in escalation_selectors.active_rules()] == [*before, "Chest pain"]


def test_another_process_sees_a_change_within_a_second_and_not_before(
    django_capture_on_commit_callbacks,
):
    clock = Clock()
    elsewhere = another_process(clock)
    before = rule_names(elsewhere)
    with django_capture_on_commit_callbacks(execute=True):
        rule = escalation_services.rule_create(name="Chest pain", **RULE)

    clock.now += 0.5
    within_the_second = rule_names(elsewhere)
    clock.now += 0.6
    after_the_second = rule_names(elsewhere)
    with django_capture_on_commit_callbacks(execute=True):
        escalation_services.rule_update(rule=rule, changes={"active": False})
    clock.now += 1.1

    assert within_the_second == before
    assert after_the_second == [*before, "Chest pain"]
    assert rule_names(elsewhere) == before


def test_a_change_that_never_commits_moves_no_generation(django_capture_on_commit_callbacks):
    clock = Clock()
    elsewhere = another_process(clock)
    before = rule_names(elsewhere)
    # Saved, then rolled back with the test's transaction: the other process is never
    # told, and reloads nothing.
    with django_capture_on_commit_callbacks(execute=False) as pending:
        escalation_services.rule_create(name="Never committed", **RULE)
    clock.now += 1.1

    assert len(pending) == 1
    assert rule_names(elsewhere) == before


def test_with_redis_down_a_copy_is_kept_at_most_its_maximum_age():
    clock = Clock()
    loads = []
    copy = ProcessCopy("counted", lambda: loads.append(1) or len(loads), clock=clock)
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with override_settings(CACHES=unreachable):
        first = copy.get()
        clock.now += copy.max_age_seconds - 1
        kept = copy.get()
        clock.now += 2
        reloaded = copy.get()

    assert (first, kept, reloaded) == (1, 1, 2)


def test_sla_policies_follow_a_change(django_capture_on_commit_callbacks):
    # The shipped policies are there unless a transactional test emptied the tables.
    policy, _ = SlaPolicy.objects.update_or_create(
        priority=URGENT,
        defaults={
            "first_response_minutes": 15,
            "next_response_minutes": 30,
            "resolution_minutes": 240,
        },
    )
    assert escalation_selectors.sla_policy_for(priority=URGENT).first_response_minutes == 15

    with django_capture_on_commit_callbacks(execute=True):
        escalation_services.sla_policy_update(policy=policy, changes={"first_response_minutes": 5})

    assert escalation_selectors.sla_policy_for(priority=URGENT).first_response_minutes == 5


def _subscribe(client, patient_id):
    return Subscription.objects.create(
        api_client=client,
        criteria="Communication",
        patient_id=patient_id,
        endpoint="https://ehr.example/notify",
        secret="s",
    )


def test_fhir_subscriptions_are_known_without_a_statement_per_message(
    django_assert_num_queries, team
):
    _, client = make_api_key(scopes=["communications:read"])
    named, other = make_patient(team=team), make_patient(team=team)
    _subscribe(client, named.pk)
    fhir_services._any_subscription_for(other.pk)  # loads the copy

    with django_assert_num_queries(0):
        assert fhir_services._any_subscription_for(named.pk)
        assert not fhir_services._any_subscription_for(other.pk)
    _subscribe(client, None)  # every patient of the client's
    assert fhir_services._any_subscription_for(other.pk)


def test_past_the_kept_number_each_message_asks_the_database(monkeypatch, team):
    monkeypatch.setattr(fhir_services, "SUBSCRIBED_PATIENTS_KEPT", 2)
    _, client = make_api_key(scopes=["communications:read"])
    patients = [make_patient(team=team) for _ in range(4)]
    for patient in patients[:3]:
        _subscribe(client, patient.pk)

    assert fhir_services._any_subscription_for(patients[2].pk)
    assert not fhir_services._any_subscription_for(patients[3].pk)
    assert fhir_services._subscribed.get()[1] is fhir_services._MANY
