"""Reply suggestions: the team's canned responses that fit the latest message."""

import pytest
from django.utils import timezone

from channels_app.models import CannedResponse
from channels_app.services import conversation_open
from compliance.models import AuditEvent
from contactcenter import roles
from tests.escalation.conftest import receive
from tests.factories import TeamFactory, make_patient, make_staff, token_for
from understanding.selectors import reply_suggestions
from understanding.services import interaction_analyse

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]


@pytest.fixture
def canned(front_desk):
    rows = {
        "billing": (
            "Billing question",
            "I'm sorry about the charge. I've asked our billing office to review your "
            "bill and your insurance claim; they will call you within two business days.",
        ),
        "hours": (
            "Opening hours",
            "We are open Monday to Friday 8am to 6pm and Saturday 9am to 1pm.",
        ),
        "refill": (
            "Refill received",
            "We received your prescription refill request and sent it to the nurse.",
        ),
        "reschedule": (
            "Reschedule",
            "Of course, we can move your appointment. Which day and time work better?",
        ),
        "results": (
            "Results pending",
            "Your test results are not back yet; the doctor will call you once they are.",
        ),
    }
    return {
        key: CannedResponse.objects.create(team=front_desk, title=title, body=body)
        for key, (title, body) in rows.items()
    }


@pytest.fixture
def conversation_with_billing_question(front_desk):
    patient = make_patient(team=front_desk)
    interaction = receive(
        front_desk, "why was my insurance charged twice for one visit?", patient=patient
    )
    interaction_analyse(interaction=interaction)
    return interaction.conversation


def test_the_canned_response_of_the_messages_intent_comes_first_with_why(
    canned, conversation_with_billing_question
):
    decision, suggestions = reply_suggestions(conversation=conversation_with_billing_question)

    assert decision.intent == "billing"
    assert len(suggestions) == 3
    first = suggestions[0]
    assert first.canned_response == canned["billing"]
    assert first.why.startswith("answers intent billing")
    assert "insurance" in first.why
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)


def test_a_conversation_without_inbound_text_has_no_suggestions(front_desk, canned):
    conversation = conversation_open(channel="sms", team=front_desk, occurred_at=timezone.now())
    assert reply_suggestions(conversation=conversation) == (None, [])


def test_suggestions_api_for_member_teammate_and_outsider(
    client, front_desk, canned, conversation_with_billing_question, django_assert_max_num_queries
):
    conversation = conversation_with_billing_question
    url = f"/api/v1/conversations/{conversation.pk}/suggestions/"
    member = make_staff("desk-member", role=roles.AGENT, teams=[front_desk])
    teammate = make_staff("desk-lead", role=roles.SUPERVISOR, teams=[front_desk])
    outsider = make_staff("south", role=roles.AGENT, teams=[TeamFactory(name="South")])

    for user in (member, teammate):
        headers = token_for(user)
        with django_assert_max_num_queries(12):
            response = client.get(url, **headers)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["intent"]["intent"] == "billing"
        assert body["intent"]["words"]
        assert body["suggestions"][0]["canned_response"] == canned["billing"].pk
        assert body["suggestions"][0]["why"]
        audit = AuditEvent.objects.filter(actor_user_id=user.pk, resource_type="conversation")
        assert audit.get().patient_ids == [str(conversation.patient_id)]

    response = client.get(url, **token_for(outsider))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    denial = AuditEvent.objects.get(actor_user_id=outsider.pk)
    assert denial.outcome == "denied"
