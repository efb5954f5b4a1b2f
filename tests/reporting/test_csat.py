"""CSAT surveys: scheduled when staff resolve a conversation, skipped for the
reasons the practice asked for, sent on the same channel after the delay, and
answered by an SMS reply, with an optional comment stored encrypted. (Email and
portal surveys, answered by a link: test_csat_links.py.)"""

import time
from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from channels_app.models import ChannelAccount, Conversation, Interaction, OutboundMessage
from channels_app.services import conversation_change, outbound_create
from channels_app.signals import conversation_resolved, interaction_received
from channels_app.tasks import inbound_process
from escalation.sentiment import score_text
from patients.models import Channel, ContactPoint
from patients.services import sms_opt_out
from reporting.models import SurveyReply, SurveyRequest, SurveyResponse
from reporting.selectors import kpi_report, kpi_today
from reporting.services import survey_reply_record, surveys_send_due
from reporting.tasks import send_due_surveys
from tests.channels_app.conftest import sms_params, twilio_signed
from tests.reporting.conftest import (
    PRACTICE_NUMBER,
    at,
    conversation,
    make_due,
    patient_with_phone,
    resolve,
)

PHONE = "+14155550100"
QUESTION_START = "Demo Family Practice: how satisfied are you"


@pytest.fixture
def patient(north):
    return patient_with_phone(north, PHONE)


def inbound(client, body, *, sender=PHONE):
    """An SMS through the Twilio webhook, then the inbound worker's processing
    (run here in-process), which sends interaction_received."""
    sid = f"SM{time.monotonic_ns():032d}"[:34]
    params = sms_params(body, sid=sid, sender=sender, to=PRACTICE_NUMBER)
    path = "/webhooks/twilio/sms/"
    response = client.post(path, params, **twilio_signed(path, params))
    assert response.status_code == 200
    interaction = Interaction.objects.get(provider_id=sid)
    inbound_process(str(interaction.pk))
    return interaction


def wait_for(probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def resolved_thread(client, patient, sms_line, north_agent, django_capture_on_commit_callbacks):
    """The patient wrote, staff resolved the conversation, the survey went out."""
    first = inbound(client, "Can you send my refill to the pharmacy?")
    resolve(first.conversation, north_agent, django_capture_on_commit_callbacks)
    make_due()
    send_due_surveys()
    return first.conversation


def test_resolving_schedules_a_survey_after_the_delay(
    client, patient, sms_line, north_agent, settings, django_capture_on_commit_callbacks
):
    settings.CSAT_DELAY_SECONDS = 1800
    conv = inbound(client, "Is Dr. Patel in on Monday?").conversation

    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    survey = SurveyRequest.objects.get(conversation=conv)
    conv.refresh_from_db()
    assert survey.state == SurveyRequest.State.SCHEDULED
    assert survey.skip_reason == ""
    assert survey.scheduled_for == conv.resolved_at + timedelta(seconds=1800)
    assert (survey.team_id, survey.channel, survey.patient_id) == (
        conv.team_id,
        Channel.SMS,
        patient.pk,
    )


def test_a_survey_is_sent_once_when_due_on_the_same_conversation(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "Is Dr. Patel in on Monday?").conversation
    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    assert surveys_send_due() == 0  # not due for an hour
    make_due()
    assert surveys_send_due() == 1
    assert surveys_send_due() == 0

    survey = SurveyRequest.objects.get(conversation=conv)
    assert survey.state == SurveyRequest.State.SENT
    question = survey.question
    assert question.conversation_id == conv.pk
    assert question.direction == Interaction.Direction.OUTBOUND
    assert question.body.startswith(QUESTION_START)
    assert question.outbound.state == OutboundMessage.State.QUEUED
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.RESOLVED


def test_the_same_resolution_signal_twice_schedules_one_survey(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "Hello").conversation
    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    conversation_resolved.send(sender=Conversation, conversation=conv, actor=north_agent)

    assert SurveyRequest.objects.filter(conversation=conv).count() == 1


def test_an_urgent_conversation_is_not_surveyed(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "I have chest pain").conversation
    Conversation.objects.filter(pk=conv.pk).update(priority=Conversation.Priority.URGENT)
    conv.refresh_from_db()

    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "urgent")


def test_an_opted_out_patient_is_not_surveyed(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "Thanks for the help").conversation
    sms_opt_out(phone=PHONE, source=ContactPoint.ConsentSource.KEYWORD)

    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "opted_out")


def test_opting_out_during_the_delay_skips_the_send(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "Thanks for the help").conversation
    resolve(conv, north_agent, django_capture_on_commit_callbacks)
    sms_opt_out(phone=PHONE, source=ContactPoint.ConsentSource.KEYWORD)
    make_due()

    assert surveys_send_due() == 0

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason, survey.question) == ("skipped", "opted_out", None)


def test_a_patient_surveyed_in_the_last_7_days_is_not_surveyed_again(
    client, resolved_thread, north_agent, django_capture_on_commit_callbacks
):
    second = inbound(client, "One more question about the bill").conversation
    assert second.pk != resolved_thread.pk

    resolve(second, north_agent, django_capture_on_commit_callbacks)

    survey = SurveyRequest.objects.get(conversation=second)
    assert (survey.state, survey.skip_reason) == ("skipped", "recent_survey")


def test_a_survey_older_than_7_days_does_not_prevent_the_next(
    client, resolved_thread, north_agent, django_capture_on_commit_callbacks
):
    SurveyRequest.objects.update(created_at=timezone.now() - timedelta(days=8))
    Interaction.objects.filter(direction=Interaction.Direction.OUTBOUND).update(
        occurred_at=timezone.now() - timedelta(days=8)
    )
    second = inbound(client, "One more question about the bill").conversation

    resolve(second, north_agent, django_capture_on_commit_callbacks)

    assert SurveyRequest.objects.get(conversation=second).state == "scheduled"


def test_a_conversation_reopened_before_the_send_is_not_surveyed(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    conv = inbound(client, "Thanks").conversation
    resolve(conv, north_agent, django_capture_on_commit_callbacks)
    conversation_change(
        conversation=conv,
        actor=north_agent,
        actor_is_supervisor=False,
        changes={"status": Conversation.Status.OPEN},
    )
    make_due()

    surveys_send_due()

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "reopened")


def test_a_pending_reminder_reply_window_holds_the_survey_back(
    client, patient, sms_line, north, north_agent, django_capture_on_commit_callbacks
):
    # A reminder (an automated message on another conversation) just went out: a
    # "1" or "2" now could answer either.
    reminder_thread = conversation(
        north, patient=patient, account=sms_line, opened=timezone.now(), resolved=timezone.now()
    )
    outbound_create(conversation=reminder_thread, body="Your appointment is tomorrow. Reply C.")
    conv = inbound(client, "Where do I park?").conversation
    assert conv.pk != reminder_thread.pk

    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "awaiting_other_reply")


def test_voice_conversations_are_not_surveyed(north, north_agent):
    conv = conversation(north, channel=Channel.VOICE, address=PHONE, opened=timezone.now())

    conversation_resolved.send(sender=Conversation, conversation=conv, actor=north_agent)

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "channel_not_surveyed")


def test_an_sms_reply_records_the_score_and_closes_the_thread_it_opened(client, resolved_thread):
    reply = inbound(client, " 4 ")

    response = SurveyResponse.objects.get(conversation=resolved_thread)
    assert (response.score, response.effort_score, response.comment) == (4, None, "")
    assert response.received_at == reply.occurred_at
    assert response.survey.state == SurveyRequest.State.ANSWERED
    # The bare score opened a conversation of its own; nobody needs to work it.
    opened = reply.conversation
    opened.refresh_from_db()
    assert opened.pk != resolved_thread.pk
    assert opened.status == Conversation.Status.RESOLVED
    assert SurveyReply.objects.get(interaction=reply).closed_conversation_id == opened.pk
    assert Interaction.objects.filter(
        conversation=opened, kind="event", metadata__change="survey_answer_closed"
    ).exists()


def test_a_follow_up_text_is_the_comment_encrypted_and_scored(client, resolved_thread):
    inbound(client, "5")
    text = "The nurse was wonderful and so helpful, thank you!"

    comment = inbound(client, text)

    response = SurveyResponse.objects.get(conversation=resolved_thread)
    assert response.comment == text
    assert response.comment_sentiment == score_text(text)
    assert response.comment_sentiment > 0.5
    with connection.cursor() as cursor:
        cursor.execute("SELECT comment FROM reporting_surveyresponse WHERE id = %s", [response.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("v1:") and "nurse" not in stored
    # A comment may need a person: its conversation stays in the inbox.
    comment.conversation.refresh_from_db()
    assert comment.conversation.status == Conversation.Status.OPEN
    assert SurveyReply.objects.get(interaction=comment).part == "comment"


def test_the_same_reply_processed_twice_records_nothing_new(client, resolved_thread):
    reply = inbound(client, "3")

    interaction_received.send(sender=Interaction, interaction=reply)
    survey_reply_record(interaction=reply)

    assert SurveyResponse.objects.get().score == 3
    assert SurveyReply.objects.count() == 1


def test_a_second_digit_does_not_change_the_answer(client, resolved_thread):
    inbound(client, "2")
    second = inbound(client, "5")

    assert SurveyResponse.objects.get().score == 2
    assert not SurveyReply.objects.filter(interaction=second).exists()
    second.conversation.refresh_from_db()
    assert second.conversation.status == Conversation.Status.OPEN


def test_a_digit_after_another_message_was_sent_is_not_an_answer(
    client, resolved_thread, north_agent
):
    outbound_create(
        conversation=resolved_thread, body="How many tablets are left?", author=north_agent
    )

    inbound(client, "3")

    assert not SurveyResponse.objects.exists()


def test_a_reply_after_the_window_is_not_an_answer(client, resolved_thread, settings):
    settings.CSAT_REPLY_WINDOW_SECONDS = 60
    SurveyRequest.objects.update(sent_at=timezone.now() - timedelta(minutes=5))

    inbound(client, "4")

    assert not SurveyResponse.objects.exists()


def test_a_reply_with_no_survey_in_the_window_reads_no_message_history(
    client, patient, sms_line, north_agent
):
    # Every inbound SMS asks whether it answers a survey: without a survey sent to
    # the sender in the reply window, one look at the surveys decides it, not a
    # read of every message ever sent to them (which grows with their history).
    from django.test.utils import CaptureQueriesContext

    first = inbound(client, "Is the lab open on Saturday?")
    outbound_create(conversation=first.conversation, body="Yes, 8 to 12.", author=north_agent)
    reply = inbound(client, "5")
    reply = Interaction.objects.select_related("conversation").get(pk=reply.pk)

    # The contacts surveyed recently are kept per process: the first message after a
    # change loads them (one statement on the surveys), the next ones ask nothing.
    from reporting import services as reporting_services

    reporting_services._surveyed.forget()
    with CaptureQueriesContext(connection) as first_queries:
        assert survey_reply_record(interaction=reply) is None
    with CaptureQueriesContext(connection) as next_queries:
        assert survey_reply_record(interaction=reply) is None

    assert len(first_queries) == 1, first_queries.captured_queries
    statement = first_queries.captured_queries[0]["sql"]
    assert SurveyRequest._meta.db_table in statement
    assert Interaction._meta.db_table not in statement
    assert len(next_queries) == 0, next_queries.captured_queries


def test_a_late_message_asks_the_database_for_a_survey_the_copy_does_not_hold(
    resolved_thread, settings
):
    """The kept copy answers for messages inside its window; a message older than
    it (one that waited in a backlog) or a copy past its size asks the database,
    which still finds a survey the copy does not hold."""
    from datetime import timedelta

    from django.utils import timezone

    from reporting import services as reporting_services

    window = timedelta(seconds=settings.CSAT_REPLY_WINDOW_SECONDS)
    survey = SurveyRequest.objects.get(conversation=resolved_thread)
    now = timezone.now()
    # Sent just before the copy's window, which starts an hour before the reply
    # window's: a message from two hours ago may still answer it.
    sent = now - window - timedelta(minutes=90)
    SurveyRequest.objects.filter(pk=survey.pk).update(sent_at=sent)
    reporting_services._surveyed.forget()
    asks = reporting_services._survey_sent_within_reply_window

    assert not asks(resolved_thread, now)
    assert asks(resolved_thread, now - timedelta(hours=2))
    reporting_services._surveyed.forget()
    settings.CSAT_REPLY_WINDOW_SECONDS += 3600 * 2
    assert asks(resolved_thread, now), "in the copy once the window covers it"


def test_past_the_kept_number_each_sms_asks_the_database(resolved_thread, monkeypatch):
    from django.utils import timezone

    from reporting import services as reporting_services

    monkeypatch.setattr(reporting_services, "SURVEYED_CONTACTS_KEPT", 0)
    reporting_services._surveyed.forget()

    assert reporting_services._survey_sent_within_reply_window(resolved_thread, timezone.now())
    assert reporting_services._surveyed.get()[1] is None


def test_text_before_any_score_is_an_ordinary_message(client, resolved_thread):
    reply = inbound(client, "Who do I call about billing?")

    assert not SurveyResponse.objects.exists()
    assert not SurveyReply.objects.filter(interaction=reply).exists()


def test_the_effort_question_is_asked_when_enabled(client, resolved_thread, settings):
    settings.CSAT_ASK_EFFORT = True

    inbound(client, "5")
    response = SurveyResponse.objects.get()
    assert response.effort_question.body.startswith("Thank you! And how easy")
    inbound(client, "2")

    response.refresh_from_db()
    assert (response.score, response.effort_score) == (5, 2)


def test_survey_answers_are_left_out_of_conversation_figures_and_fcr(
    client, resolved_thread, north
):
    inbound(client, "4")
    inbound(client, "Great service")
    today = kpi_today()  # the practice's day, which the report counts in

    figures = kpi_report(since=today, until=today, team_ids=[north.pk])["period"]

    # The patient's first thread, and the comment's (open); not the score's.
    assert figures["conversations"]["opened"] == 2
    assert figures["conversations"]["resolved"] == 1
    assert figures["conversations"]["fcr"] == 1
    assert figures["csat"] == {
        "surveys_sent": 1,
        "responses": 1,
        "mean": 4.0,
        "satisfied_share": 1.0,
        "ces_responses": 0,
        "ces_mean": None,
    }


def test_csat_figures_of_known_answers(north, south):
    scores = [(5, 2), (4, None), (3, 4), (1, None)]
    for n, (score, effort) in enumerate(scores):
        conv = conversation(north, opened=at(3, 9), resolved=at(3, 10), address=f"+1415555020{n}")
        survey = SurveyRequest.objects.create(
            conversation=conv,
            team=north,
            channel=Channel.SMS,
            state=SurveyRequest.State.ANSWERED,
            scheduled_for=at(3, 11),
            sent_at=at(3, 11),
        )
        SurveyResponse.objects.create(
            survey=survey,
            conversation=conv,
            team=north,
            channel=Channel.SMS,
            score=score,
            effort_score=effort,
            received_at=at(4 if n < 3 else 5, 8),
        )
    other = conversation(south, opened=at(3, 9), resolved=at(3, 10), address="+14155550299")
    SurveyResponse.objects.create(
        survey=SurveyRequest.objects.create(
            conversation=other, team=south, channel="sms", scheduled_for=at(3, 11)
        ),
        conversation=other,
        team=south,
        channel="sms",
        score=1,
        received_at=at(4, 8),
    )

    report = kpi_report(since=date(2025, 3, 3), until=date(2025, 3, 9), team_ids=[north.pk])

    assert report["period"]["csat"] == {
        "surveys_sent": 4,
        "responses": 4,
        "mean": 3.25,
        "satisfied_share": 0.5,
        "ces_responses": 2,
        "ces_mean": 3.0,
    }
    fourth = next(row for row in report["intervals"] if row["start"] == date(2025, 3, 4))
    assert (fourth["csat"]["responses"], fourth["csat"]["mean"]) == (3, 4.0)


@pytest.mark.django_db(transaction=True)
def test_end_to_end_through_a_real_worker_and_the_twilio_stub(
    client, twilio_stub_settings, celery_worker_real, north, north_agent
):
    """Resolve, send through the official client to the Twilio stub on the real
    worker, answer by SMS through the webhook, processed by the worker."""
    ChannelAccount.objects.create(
        kind=Channel.SMS, name="Line", address=PRACTICE_NUMBER, team=north
    )
    patient_with_phone(north, PHONE)
    params = sms_params("Can I get a refill?", sid="SM" + "1" * 32, sender=PHONE)
    client.post("/webhooks/twilio/sms/", params, **twilio_signed("/webhooks/twilio/sms/", params))
    conv = Conversation.objects.get()
    # Resolved after the worker has processed the message, as a person would: its
    # processing (SLA, routing) and the resolution are then in a fixed order.
    wait_for(lambda: Interaction.objects.filter(processed_at__isnull=False).exists())
    conversation_change(
        conversation=conv,
        actor=north_agent,
        actor_is_supervisor=False,
        changes={"status": Conversation.Status.RESOLVED},
    )
    make_due()

    send_due_surveys.delay()
    # The worker's processing of the refill request also asks which medication (an
    # automated follow-up through the same stub): the survey is the one that asks
    # how satisfied the patient is.
    [sent] = wait_for(
        lambda: [
            message
            for message in twilio_stub_settings.created_messages
            if message["body"].startswith(QUESTION_START)
        ]
    )
    assert sent["to"] == PHONE
    params = sms_params("5", sid="SM" + "2" * 32, sender=PHONE)
    client.post("/webhooks/twilio/sms/", params, **twilio_signed("/webhooks/twilio/sms/", params))

    response = wait_for(lambda: SurveyResponse.objects.filter(conversation=conv).first())
    assert response.score == 5


def test_a_failing_survey_decision_does_not_fail_the_resolution(
    client, patient, sms_line, north_agent, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr("reporting.services.survey_schedule", broken)
    conv = inbound(client, "Thanks").conversation

    resolve(conv, north_agent, django_capture_on_commit_callbacks)

    conv.refresh_from_db()
    assert conv.status == Conversation.Status.RESOLVED
    assert not SurveyRequest.objects.exists()


def test_the_survey_goes_out_in_the_patients_language(
    client, patient, sms_line, north_agent, django_capture_on_commit_callbacks
):
    patient.preferred_language = "es"
    patient.save(update_fields=["preferred_language"])
    # Written in Spanish: the inbound task runs escalation's processing, whose language
    # detection the survey follows before the record's language.
    conv = inbound(client, "Hola, ¿el doctor Patel atiende el lunes?").conversation
    resolve(conv, north_agent, django_capture_on_commit_callbacks)
    make_due()

    assert surveys_send_due() == 1

    question = SurveyRequest.objects.get(conversation=conv).question
    assert question.body.startswith(
        "Demo Family Practice: ¿qué tan satisfecho está con cómo atendimos su solicitud?"
    )
