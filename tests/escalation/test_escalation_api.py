import pytest

from channels_app.models import Conversation, Interaction
from compliance.models import AuditEvent
from contactcenter import roles
from escalation import services
from escalation.models import Escalation, EscalationRule, Notification
from tests.escalation.conftest import receive, reload
from tests.factories import TeamFactory, make_patient, make_staff, token_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]

RULES = "/api/v1/escalation-rules/"
ESCALATIONS = "/api/v1/escalations/"
GOOD_RULE = {
    "name": "Billing anger",
    "order": 50,
    "conditions": {"phrases": ["lawyer", "refund"], "sentiment_at_or_below": -0.3},
    "actions": {"set_priority": "high", "notify_supervisors": True},
}


def acknowledge_url(escalation):
    return f"{ESCALATIONS}{escalation.pk}/acknowledge/"


def escalate_url(conversation):
    return f"/api/v1/conversations/{conversation.pk}/escalate/"


@pytest.fixture
def south(db):
    return TeamFactory(name="South")


@pytest.fixture
def admin_user(db):
    return make_staff("admin", role=roles.ADMIN)


@pytest.fixture
def lead(front_desk):
    """The user with access who may acknowledge: a supervisor of the team."""
    return make_staff("desk-lead", role=roles.SUPERVISOR, teams=[front_desk])


@pytest.fixture
def teammate(front_desk):
    return make_staff("desk-agent", role=roles.AGENT, teams=[front_desk])


@pytest.fixture
def outsider(south):
    return make_staff("south-lead", role=roles.SUPERVISOR, teams=[south])


@pytest.fixture
def patient(front_desk):
    return make_patient(team=front_desk)


@pytest.fixture
def escalation(front_desk, patient, lead):
    services.rule_create(
        name="Refunds", conditions={"phrases": ["refund"]}, actions={"notify_supervisors": True}
    )
    interaction = receive(front_desk, "I want a refund now", patient=patient)
    [escalation] = services.interaction_process(interaction_id=interaction.pk)
    return escalation


def post_json(client, path, data, user):
    return client.post(path, data, content_type="application/json", **token_for(user))


# --- Rules -----------------------------------------------------------------------------


def test_admin_creates_lists_updates_and_deletes_a_rule(client, admin_user):
    created = post_json(client, RULES, GOOD_RULE, admin_user)
    assert created.status_code == 201, created.json()
    rule_id = created.json()["id"]

    listed = client.get(RULES, **token_for(admin_user)).json()["results"]
    changed = client.patch(
        f"{RULES}{rule_id}/",
        {"active": False},
        content_type="application/json",
        **token_for(admin_user),
    )
    deleted = client.delete(f"{RULES}{rule_id}/", **token_for(admin_user))

    assert [row["name"] for row in listed] == ["Billing anger"]
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert deleted.status_code == 204
    assert not EscalationRule.objects.exists()
    assert AuditEvent.objects.filter(resource_type="escalation_rule", action="create").exists()


def test_rule_with_invalid_conditions_is_a_400_naming_the_field(client, admin_user):
    bad = {
        **GOOD_RULE,
        "conditions": {"phrases": ["lawyer", ""], "sentiment_at_or_below": -3},
    }

    response = post_json(client, RULES, bad, admin_user)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["details"]["conditions"] == [
        "phrases: phrase 2 is empty (spaces, hyphens and apostrophes alone match nothing): ''.",
        "sentiment_at_or_below: must be a number from -1 to 1, got -3.",
    ]
    assert not EscalationRule.objects.exists()


def test_an_update_that_breaks_a_rule_is_refused_and_changes_nothing(client, admin_user):
    rule = services.rule_create(**GOOD_RULE)

    response = client.patch(
        f"{RULES}{rule.pk}/",
        {"actions": {"auto_reply_template": "Dear $patient_name"}},
        content_type="application/json",
        **token_for(admin_user),
    )

    assert response.status_code == 400
    assert (
        "unknown placeholder(s) $patient_name" in response.json()["error"]["details"]["actions"][0]
    )
    rule.refresh_from_db()
    assert rule.actions == GOOD_RULE["actions"]


def test_duplicate_rule_name_is_a_400(client, admin_user):
    services.rule_create(**GOOD_RULE)

    response = post_json(client, RULES, GOOD_RULE, admin_user)

    assert response.status_code == 400
    assert "name" in response.json()["error"]["details"]


@pytest.mark.parametrize("role", [roles.AGENT, roles.SUPERVISOR, roles.COMPLIANCE])
def test_only_admins_manage_rules(client, front_desk, role):
    user = make_staff(f"user-{role}", role=role, teams=[front_desk])

    assert client.get(RULES, **token_for(user)).status_code == 403
    assert post_json(client, RULES, GOOD_RULE, user).status_code == 403


# --- Escalations: three users -------------------------------------------------------------


def test_open_escalations_are_listed_to_my_team_and_not_to_outsiders(
    client, escalation, lead, teammate, outsider
):
    for user in (lead, teammate):
        [row] = client.get(ESCALATIONS, **token_for(user)).json()["results"]
        assert row["id"] == str(escalation.pk)
        assert row["reason"] == 'Rule "Refunds": matched "refund"; sentiment +0.08'
        assert row["context_summary"]["last_messages"][0]["preview"] == "I want a refund now"
        assert row["priority"] == "normal"

    assert client.get(ESCALATIONS, **token_for(outsider)).json()["results"] == []
    audit = AuditEvent.objects.filter(resource_type="escalation", actor_user_id=lead.pk).get()
    assert audit.patient_ids == [str(escalation.patient_id)]


def test_supervisor_acknowledges_and_the_escalation_leaves_the_open_list(
    client, escalation, lead, teammate
):
    response = post_json(client, acknowledge_url(escalation), {}, lead)

    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "desk-lead"
    escalation.refresh_from_db()
    assert escalation.acknowledged_by == lead
    assert not reload(escalation.conversation).escalated
    assert Notification.objects.get(user=lead).read_at is not None
    assert client.get(ESCALATIONS, **token_for(teammate)).json()["results"] == []
    assert any(
        event.body == "desk-lead acknowledged the escalation"
        for event in Interaction.objects.filter(kind="event")
    )


def test_acknowledging_twice_is_a_409(client, escalation, lead):
    post_json(client, acknowledge_url(escalation), {}, lead)

    response = post_json(client, acknowledge_url(escalation), {}, lead)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_acknowledged"


def test_an_agent_may_not_acknowledge(client, escalation, teammate):
    response = post_json(client, acknowledge_url(escalation), {}, teammate)

    assert response.status_code == 403
    escalation.refresh_from_db()
    assert escalation.acknowledged_at is None


def test_an_outsider_gets_404_on_acknowledge_and_the_denial_is_audited(
    client, escalation, outsider
):
    response = post_json(client, acknowledge_url(escalation), {}, outsider)

    assert response.status_code == 404
    escalation.refresh_from_db()
    assert escalation.acknowledged_at is None
    denial = AuditEvent.objects.get(actor_user_id=outsider.pk, resource_type="escalation")
    assert (denial.outcome, denial.patient_ids) == ("denied", [str(escalation.patient_id)])


def test_compliance_officer_sees_no_escalations(client, escalation):
    officer = make_staff("officer", role=roles.COMPLIANCE)

    assert client.get(ESCALATIONS, **token_for(officer)).status_code == 403


# --- Manual escalation --------------------------------------------------------------------


def test_agent_escalates_by_hand_to_the_clinical_team_with_a_reason(
    client, front_desk, clinical, nurse, clinical_supervisor, teammate, patient
):
    conversation = receive(front_desk, "My wound looks odd", patient=patient).conversation

    response = post_json(
        client,
        escalate_url(conversation),
        {"reason": "Wound may be infected", "to_team": "clinical", "priority": "high"},
        teammate,
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["reason"], body["to_team"]) == (
        "manual",
        "Wound may be infected",
        clinical.pk,
    )
    conversation = reload(conversation)
    assert (conversation.team, conversation.assignee, conversation.escalated) == (
        clinical,
        nurse,
        True,
    )
    assert conversation.get_priority_display() == "high"
    assert Escalation.objects.get().created_by == teammate
    assert list(Notification.objects.values_list("user", flat=True)) == [clinical_supervisor.pk]


def test_manual_escalation_needs_a_reason_and_a_real_team(client, front_desk, teammate):
    conversation = receive(front_desk, "Hello").conversation

    no_reason = post_json(client, escalate_url(conversation), {}, teammate)
    no_team = post_json(
        client, escalate_url(conversation), {"reason": "x", "to_team": 987654}, teammate
    )

    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()["error"]["details"]
    assert no_team.status_code == 400
    assert no_team.json()["error"]["details"] == {"to_team": ["No such team."]}
    assert not Escalation.objects.exists()


def test_outsider_cannot_escalate_a_conversation_of_another_team(
    client, front_desk, outsider, patient
):
    conversation = receive(front_desk, "Hello", patient=patient).conversation

    response = post_json(client, escalate_url(conversation), {"reason": "x"}, outsider)

    assert response.status_code == 404
    assert not Escalation.objects.exists()
    assert not Conversation.objects.get(pk=conversation.pk).escalated


def test_a_resolved_conversation_cannot_be_escalated(client, front_desk, teammate):
    conversation = receive(front_desk, "Hello").conversation
    Conversation.objects.filter(pk=conversation.pk).update(status="resolved")

    response = post_json(client, escalate_url(conversation), {"reason": "x"}, teammate)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conversation_resolved"
