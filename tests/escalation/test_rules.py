from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from channels_app.models import Interaction, OutboundMessage
from contactcenter import roles
from escalation import rules, services
from escalation.models import Escalation, EscalationRule, EscalationRun, Notification
from patients.models import Appointment, Channel
from patients.services import patient_merge
from tests.escalation.conftest import make_available, receive, reload
from tests.factories import make_patient, make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]

VALID_ACTIONS = {"set_priority": "high"}


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"phrases": ["chest pain", "  - ' "]}, "phrases: phrase 2 is empty"),
        ({"phrases": []}, "phrases: give at least one keyword or phrase"),
        ({"phrases": "chest pain"}, "phrases: phrases must be a list of strings"),
        ({"sentiment_at_or_below": -1.5}, "sentiment_at_or_below: must be a number from -1 to 1"),
        ({"sentiment_at_or_below": True}, "sentiment_at_or_below: must be a number from -1 to 1"),
        ({"phrases": ["x"], "channels": ["fax"]}, "channels: unknown 'fax'"),
        ({"patient_flags": ["celebrity"]}, "patient_flags: unknown 'celebrity'"),
        ({"repeat_contact": {"count": 1, "days": 2}}, "repeat_contact: count must be"),
        ({"repeat_contact": {"count": 3}}, 'repeat_contact: must be {"count": N, "days": D}'),
        ({"phrases": ["x"], "keywords": ["y"]}, "unknown condition 'keywords'"),
        ({"channels": ["sms"]}, "A rule needs a trigger"),
        ({}, "A rule needs a trigger"),
        (
            {"no_response_within_sla": True, "phrases": ["x"]},
            "no_response_within_sla: a breach has no message of its own",
        ),
        (["chest pain"], "Conditions must be an object."),
    ],
)
def test_invalid_conditions_are_refused_by_model_validation_naming_the_problem(conditions, message):
    rule = EscalationRule(name="Bad", conditions=conditions, actions=VALID_ACTIONS)

    with pytest.raises(ValidationError) as refused:
        rule.full_clean()

    assert any(message in text for text in refused.value.message_dict["conditions"])


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ({"set_priority": "critical"}, "set_priority: must be one of low, normal, high, urgent"),
        ({"route_to_team": "billing"}, 'route_to_team: must be a team id or "clinical"'),
        ({"route_to_team": 999999}, "route_to_team: no team with id 999999"),
        ({"notify_supervisors": "yes"}, "notify_supervisors: must be true or false"),
        ({"auto_reply_template": "Hi $name"}, "unknown placeholder(s) $name"),
        ({"auto_reply_template": "Costs $5"}, "invalid placeholder at line 1, column 7"),
        ({"auto_reply_template": "  "}, "auto_reply_template: must be a non-empty text"),
        ({"page_someone": True}, "unknown action 'page_someone'"),
    ],
)
def test_invalid_actions_are_refused_by_model_validation_naming_the_problem(actions, message):
    rule = EscalationRule(name="Bad", conditions={"phrases": ["help"]}, actions=actions)

    with pytest.raises(ValidationError) as refused:
        rule.full_clean()

    assert any(message in text for text in refused.value.message_dict["actions"])


def test_rule_create_service_refuses_an_invalid_rule_and_stores_nothing():
    with pytest.raises(ValidationError) as refused:
        services.rule_create(
            name="Bad", conditions={"sentiment_at_or_below": 3}, actions=VALID_ACTIONS
        )

    assert "conditions" in refused.value.message_dict
    assert not EscalationRule.objects.filter(name="Bad").exists()


def test_shipped_default_rules_are_valid(defaults):
    for rule in EscalationRule.objects.all():
        rule.full_clean()
    assert EscalationRule.objects.filter(name="Clinical emergency").exists()


def test_phrases_match_whole_words_ignoring_case_and_accents():
    conditions = {"phrases": ["chest pain", "can't breathe"]}

    def terms(text):
        match = rules.evaluate(conditions, rules.Facts(channel="sms", text=text))
        return match.terms if match else None

    assert terms("CHÉST PAIN since noon and I cant breathe") == ("chest pain", "can't breathe")
    assert terms("my chestpain") is None


def test_every_condition_must_hold():
    conditions = {"phrases": ["refill"], "channels": ["email"], "sentiment_at_or_below": -0.2}
    facts = rules.Facts(channel="sms", text="refill please", sentiment=-0.5)

    assert rules.evaluate(conditions, facts) is None
    assert rules.evaluate(conditions, rules.Facts(channel="email", text="refill", sentiment=-0.5))
    assert not rules.evaluate(conditions, rules.Facts(channel="email", text="refill", sentiment=0))


def test_chest_pain_by_sms_becomes_urgent_clinical_with_one_auto_reply_and_one_escalation(
    defaults, front_desk, clinical, nurse
):
    patient = make_patient(team=front_desk, given_name="Ada")
    interaction = receive(front_desk, "I have chest pain since this morning", patient=patient)

    services.interaction_process(interaction_id=interaction.pk)

    conversation = reload(interaction.conversation)
    assert conversation.get_priority_display() == "urgent"
    assert conversation.team == clinical
    assert conversation.assignee == nurse
    assert conversation.escalated
    [escalation] = Escalation.objects.all()
    assert '"chest pain"' in escalation.reason
    assert escalation.matched["terms"] == ["chest pain"]
    assert (escalation.from_team, escalation.to_team, escalation.to_user) == (
        front_desk,
        clinical,
        nurse,
    )
    [reply] = Interaction.objects.filter(direction="outbound")
    assert reply.body.startswith("Hi Ada, this is Demo Family Practice.")
    assert "911" in reply.body and "988" in reply.body
    assert reply.outbound.state == OutboundMessage.State.QUEUED


def test_processing_the_same_interaction_twice_changes_nothing(defaults, front_desk, clinical):
    interaction = receive(front_desk, "I can't breathe")
    services.interaction_process(interaction_id=interaction.pk)
    before = (
        Interaction.objects.count(),
        Escalation.objects.count(),
        Notification.objects.count(),
        reload(interaction.conversation).updated_at,
    )

    assert services.interaction_process(interaction_id=interaction.pk) == []

    after = (
        Interaction.objects.count(),
        Escalation.objects.count(),
        Notification.objects.count(),
        reload(interaction.conversation).updated_at,
    )
    assert after == before
    assert EscalationRun.objects.filter(interaction=interaction).count() == 1


def test_a_second_processing_is_refused_by_the_run_row_and_writes_no_sentiment(
    defaults, front_desk, clinical
):
    """The inbound task hands over the interaction it read and skips the look-up of
    the run: the claim (one statement with the sentiment on PostgreSQL) refuses the
    second processing, and the sentiment it would store is not written."""
    interaction = receive(front_desk, "I can't breathe")
    services.interaction_process(interaction_id=interaction.pk, interaction=interaction)
    stored = Interaction.objects.get(pk=interaction.pk).sentiment
    Interaction.objects.filter(pk=interaction.pk).update(sentiment=0.5)

    again = services.interaction_process(interaction_id=interaction.pk, interaction=interaction)

    assert stored is not None and stored != 0.5
    # Outside the inbound task's optimistic attempt the claim leaves the processed
    # mark to the task.
    assert Interaction.objects.get(pk=interaction.pk).processed_at is None
    assert again == []
    assert Interaction.objects.get(pk=interaction.pk).sentiment == 0.5
    assert EscalationRun.objects.filter(interaction=interaction).count() == 1


def test_a_second_emergency_message_escalates_again_but_auto_replies_only_once(
    defaults, front_desk, clinical
):
    first = receive(front_desk, "chest pain")
    services.interaction_process(interaction_id=first.pk)
    second = receive(front_desk, "I still have chest pain", conversation=first.conversation)

    services.interaction_process(interaction_id=second.pk)

    assert Escalation.objects.count() == 2
    assert Interaction.objects.filter(direction="outbound").count() == 1


def test_strongly_negative_message_notifies_supervisors_and_goes_to_a_supervisor(
    defaults, front_desk, desk_supervisor
):
    agent = make_available(make_staff("desk-agent", role=roles.AGENT, teams=[front_desk]))
    make_available(desk_supervisor)
    interaction = receive(front_desk, "This is terrible, I am furious and nobody called me back!")

    services.interaction_process(interaction_id=interaction.pk)

    conversation = reload(interaction.conversation)
    [escalation] = Escalation.objects.all()
    assert escalation.rule.name == "Strongly negative sentiment"
    assert "sentiment -0.80 at or below -0.60" in escalation.reason
    assert conversation.assignee == desk_supervisor != agent
    assert conversation.get_priority_display() == "high"
    assert list(Notification.objects.values_list("user", flat=True)) == [desk_supervisor.pk]


def test_sentiment_is_stored_on_the_interaction_and_first_and_latest_on_the_conversation(
    front_desk,
):
    first = receive(front_desk, "Thank you so much, that was wonderful!")
    services.interaction_process(interaction_id=first.pk)
    second = receive(front_desk, "Actually this is awful.", conversation=first.conversation)
    services.interaction_process(interaction_id=second.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    conversation = reload(first.conversation)
    assert first.sentiment > 0.5 > 0 > second.sentiment
    assert (conversation.sentiment_first, conversation.sentiment_latest) == (
        first.sentiment,
        second.sentiment,
    )


def test_a_call_is_processed_without_text_and_again_when_its_transcript_arrives(
    defaults, front_desk, clinical
):
    call = receive(front_desk, "", channel=Channel.VOICE, kind=Interaction.Kind.CALL)
    services.interaction_process(interaction_id=call.pk)
    assert not Escalation.objects.exists()

    Interaction.objects.filter(pk=call.pk).update(kind=Interaction.Kind.VOICEMAIL)
    call = Interaction.objects.get(pk=call.pk)
    call.body = "Hi, I think I took an overdose of my pills"
    call.save(update_fields=["body"])
    services.interaction_process(interaction_id=call.pk)

    [escalation] = Escalation.objects.all()
    assert '"overdose"' in escalation.reason
    assert reload(call.conversation).team == clinical
    # A call cannot be answered by text: no auto-reply, and the timeline says so.
    assert not Interaction.objects.filter(direction="outbound").exists()
    assert Interaction.objects.filter(
        kind="event", conversation=call.conversation, metadata__decision="inbound"
    ).exists()


def test_repeat_contact_counts_inbound_contacts_since_the_last_resolution(front_desk):
    services.rule_create(
        name="Third contact",
        conditions={"repeat_contact": {"count": 3, "days": 2}},
        actions={"set_priority": "high"},
    )
    patient = make_patient(team=front_desk)
    now = timezone.now()
    old = receive(front_desk, "a", patient=patient, occurred_at=now - timedelta(days=3))
    services.interaction_process(interaction_id=old.pk)
    first = receive(front_desk, "b", patient=patient, occurred_at=now - timedelta(hours=5))
    second = receive(front_desk, "c", patient=patient, conversation=first.conversation)
    for interaction in (first, second):
        services.interaction_process(interaction_id=interaction.pk)
    assert not Escalation.objects.exists()

    third = receive(front_desk, "d", patient=patient, channel=Channel.EMAIL, address="a@b.org")
    services.interaction_process(interaction_id=third.pk)

    [escalation] = Escalation.objects.all()
    assert "3 contacts in 2 day(s) without a resolution" in escalation.reason
    assert escalation.matched["repeat_contact"] == {"count": 3, "days": 2, "contacts": 3}


def test_patient_flag_rule_routes_to_a_named_team(front_desk, clinical):
    services.rule_create(
        name="Interpreter",
        conditions={"patient_flags": ["needs_interpreter"]},
        actions={"route_to_team": clinical.pk},
    )
    patient = make_patient(team=front_desk, needs_interpreter=True)
    interaction = receive(front_desk, "Hola", patient=patient)

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(interaction.conversation).team == clinical
    assert Escalation.objects.get().matched["patient_flags"] == ["needs_interpreter"]


def test_context_summary_holds_every_channel_appointments_conversations_and_flags(
    defaults, front_desk, clinical
):
    patient = make_patient(
        team=front_desk, emails=["ada@example.org"], needs_interpreter=True, vip=True
    )
    email = receive(
        front_desk,
        "Question about my bill",
        patient=patient,
        channel=Channel.EMAIL,
        address="ada@example.org",
        occurred_at=timezone.now() - timedelta(hours=2),
    )
    services.interaction_process(interaction_id=email.pk)
    Appointment.objects.create(patient=patient, starts_at=timezone.now() + timedelta(days=2))
    Appointment.objects.create(patient=patient, starts_at=timezone.now() - timedelta(days=2))
    sms = receive(front_desk, "Now I have chest pain", patient=patient)

    services.interaction_process(interaction_id=sms.pk)

    summary = Escalation.objects.get().context_summary
    assert [m["channel"] for m in summary["last_messages"]] == ["sms", "email"]
    assert summary["last_messages"][0]["preview"] == "Now I have chest pain"
    assert summary["flags"] == ["needs_interpreter", "vip"]
    assert len(summary["upcoming_appointments"]) == 1
    assert [c["id"] for c in summary["open_conversations"]] == [str(email.conversation_id)]
    assert [point["sentiment"] for point in summary["sentiment"]["trend"]] == [
        email.__class__.objects.get(pk=email.pk).sentiment,
        Interaction.objects.get(pk=sms.pk).sentiment,
    ]


def test_reason_matched_terms_and_context_summary_are_encrypted_at_rest(
    defaults, front_desk, clinical
):
    interaction = receive(front_desk, "Severe bleeding from my leg, canary-7731")
    services.interaction_process(interaction_id=interaction.pk)

    with connection.cursor() as cursor:
        cursor.execute("SELECT reason, matched, context_summary FROM escalation_escalation")
        stored = " ".join(cursor.fetchone())
    assert "canary-7731" not in stored
    assert "bleeding" not in stored
    assert "canary-7731" in str(Escalation.objects.get().context_summary)


def test_merging_patients_moves_their_escalations_to_the_survivor(front_desk):
    services.rule_create(name="Refills", conditions={"phrases": ["refill"]}, actions={})
    survivor = make_patient(team=front_desk, phones=["+14155550120"])
    duplicate = make_patient(team=front_desk, phones=["+14155550121"])
    interaction = receive(front_desk, "refill please", patient=duplicate)
    services.interaction_process(interaction_id=interaction.pk)

    patient_merge(survivor=survivor, duplicate=duplicate)

    assert Escalation.objects.get().patient == survivor
