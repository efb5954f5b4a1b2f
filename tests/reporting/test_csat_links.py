"""CSAT surveys on email and portal conversations: the survey message carries one
personal link to a public page, where a GET shows the question and only a POST
records the answer (score, and an optional comment stored encrypted)."""

import re
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail, signing
from django.db import connection
from django.test import Client
from django.utils import timezone

from channels_app.models import ChannelAccount, Conversation, Interaction
from channels_app.signals import conversation_resolved
from channels_app.tasks import outbound_send
from escalation.sentiment import score_text
from patients.models import Channel
from reporting.models import SurveyReply, SurveyRequest, SurveyResponse
from reporting.selectors import kpi_report, kpi_settings, kpi_today
from reporting.services import (
    SURVEY_LINK_SALT,
    kpi_rollup_days,
    survey_reply_record,
    surveys_send_due,
)
from reporting.tasks import send_due_surveys
from tests.factories import make_patient
from tests.reporting.conftest import conversation, make_due, message, resolve

EMAIL = "ada.lovelace@example.org"
COMMENT = "The nurse was wonderful and so helpful, thank you!"
LINK = re.compile(re.escape(settings.PUBLIC_BASE_URL) + r"(/survey/([^/\s]+)/)")


@pytest.fixture
def mailbox(north):
    return ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care mailbox", address="care@practice.test", team=north
    )


@pytest.fixture
def patient(north):
    return make_patient(team=north, phones=(), emails=(EMAIL,))


@pytest.fixture
def email_thread(patient, mailbox, north, north_agent, django_capture_on_commit_callbacks):
    """The patient wrote by email, staff resolved the conversation, the survey
    went out through the email adapter."""
    conv = conversation(
        north,
        channel=Channel.EMAIL,
        patient=patient,
        account=mailbox,
        address=EMAIL,
        opened=timezone.now() - timedelta(hours=2),
    )
    message(conv, when=timezone.now() - timedelta(hours=2), body="Can I get a refill?")
    resolve(conv, north_agent, django_capture_on_commit_callbacks)
    make_due()
    send_due_surveys()
    survey = SurveyRequest.objects.get(conversation=conv)
    # The send task in-process, as the worker runs it: the message leaves by email.
    outbound_send(str(survey.question.outbound.pk))
    return conv


@pytest.fixture
def survey_path(email_thread):
    """The path of the link in the survey email, as the patient's browser opens it."""
    [sent] = mail.outbox
    [(path, _token)] = LINK.findall(sent.body)
    return path


def token_of(path):
    return LINK.fullmatch(settings.PUBLIC_BASE_URL + path).group(2)


def stored_comment(response):
    with connection.cursor() as cursor:
        cursor.execute("SELECT comment FROM reporting_surveyresponse WHERE id = %s", [response.pk])
        return cursor.fetchone()[0]


def test_an_email_survey_carries_one_personal_link(email_thread, patient):
    survey = SurveyRequest.objects.get(conversation=email_thread)
    assert survey.state == SurveyRequest.State.SENT
    [sent] = mail.outbox
    assert sent.to == [EMAIL]
    assert sent.body == survey.question.body
    assert sent.body.startswith("Demo Family Practice: how satisfied are you")
    [(_path, token)] = LINK.findall(sent.body)
    assert len(re.findall(r"https?://", sent.body)) == 1
    # The token holds the survey's id, signed; nothing about the patient.
    assert signing.loads(token, salt=SURVEY_LINK_SALT) == survey.pk
    payload = signing.b64_decode(token.split(":")[0].encode()).decode()
    assert payload == str(survey.pk)


def test_opening_the_link_shows_the_form_and_records_nothing(
    client, survey_path, patient, django_assert_num_queries
):
    with django_assert_num_queries(1):
        page = client.get(survey_path)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Demo Family Practice" in html
    assert "How satisfied are you" in html
    assert [int(v) for v in re.findall(r'type="radio" name="score" value="(\d)"', html)] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert '<textarea name="comment"' in html and 'maxlength="2000"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    for phi in (patient.given_name, patient.family_name, EMAIL, "refill"):
        assert phi not in html
    assert page["Cache-Control"].startswith("max-age=0")
    # A second look (a mail scanner, then the patient) still records nothing.
    client.get(survey_path)
    assert not SurveyResponse.objects.exists()
    assert SurveyRequest.objects.get().state == SurveyRequest.State.SENT


def test_submitting_records_the_score_and_the_encrypted_comment(client, survey_path, email_thread):
    page = client.post(survey_path, {"score": "4", "comment": COMMENT})

    assert page.status_code == 200
    assert "Your answer has been recorded" in page.content.decode()
    response = SurveyResponse.objects.get()
    survey = response.survey
    assert survey.conversation_id == email_thread.pk
    assert survey.state == SurveyRequest.State.ANSWERED
    assert (response.score, response.channel, response.team_id, response.conversation_id) == (
        4,
        Channel.EMAIL,
        email_thread.team_id,
        email_thread.pk,
    )
    assert timezone.now() - response.received_at < timedelta(minutes=1)
    assert response.comment == COMMENT
    assert response.comment_sentiment == score_text(COMMENT)
    stored = stored_comment(response)
    assert stored.startswith("v1:") and "nurse" not in stored
    # A link answer has no inbound message: no SurveyReply.
    assert not SurveyReply.objects.exists()


def test_a_score_without_a_comment_stores_no_comment(client, survey_path):
    client.post(survey_path, {"score": "2", "comment": "   "})

    response = SurveyResponse.objects.get()
    assert (response.score, response.comment, response.comment_sentiment) == (2, "", None)


def test_the_first_answer_stands(client, survey_path):
    client.post(survey_path, {"score": "4", "comment": COMMENT})

    again = client.post(survey_path, {"score": "1", "comment": "Changed my mind"})

    assert again.status_code == 200
    assert "we already have your answer" in again.content.decode()
    response = SurveyResponse.objects.get()
    assert (response.score, response.comment) == (4, COMMENT)
    assert "we already have your answer" in client.get(survey_path).content.decode()


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"), id="tampered"),
        pytest.param(lambda token: token[:20], id="truncated"),
        pytest.param(
            lambda token: signing.dumps(signing.loads(token, salt=SURVEY_LINK_SALT)),
            id="other-salt",
        ),
        pytest.param(lambda token: signing.dumps(10**9, salt=SURVEY_LINK_SALT), id="no-survey"),
    ],
)
def test_a_bad_link_is_a_plain_404(client, survey_path, make_token):
    path = f"/survey/{make_token(token_of(survey_path))}/"

    for page in (client.get(path), client.post(path, {"score": "5"})):
        assert page.status_code == 404
        assert page["Content-Type"].startswith("text/html")
        assert "This survey link is not valid" in page.content.decode()
        assert "Traceback" not in page.content.decode()
    assert not SurveyResponse.objects.exists()


def test_a_link_signed_longer_ago_than_the_reply_window_is_refused(client, email_thread):
    class SignedFourDaysAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 4 * 86400)

    survey = SurveyRequest.objects.get(conversation=email_thread)
    token = SignedFourDaysAgo(salt=SURVEY_LINK_SALT).sign_object(survey.pk)
    path = f"/survey/{token}/"

    assert client.get(path).status_code == 410
    page = client.post(path, {"score": "5"})

    assert page.status_code == 410
    assert "This survey has closed" in page.content.decode()
    assert not SurveyResponse.objects.exists()


def test_a_survey_sent_longer_ago_than_the_reply_window_is_refused(client, survey_path, settings):
    settings.CSAT_REPLY_WINDOW_SECONDS = 60
    SurveyRequest.objects.update(sent_at=timezone.now() - timedelta(minutes=5))

    assert client.get(survey_path).status_code == 410
    assert client.post(survey_path, {"score": "5"}).status_code == 410
    assert not SurveyResponse.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"score": "7"}, id="seven"),
        pytest.param({"score": "0"}, id="zero"),
        pytest.param({"score": "four"}, id="word"),
        pytest.param({"comment": "No score"}, id="missing"),
        pytest.param({"score": "5", "comment": "x" * 2001}, id="comment-too-long"),
    ],
)
def test_an_invalid_answer_shows_the_form_again_with_a_400(client, survey_path, data):
    page = client.post(survey_path, data)

    assert page.status_code == 400
    html = page.content.decode()
    assert 'class="error"' in html
    assert 'type="radio" name="score"' in html
    assert not SurveyResponse.objects.exists()
    assert SurveyRequest.objects.get().state == SurveyRequest.State.SENT


def test_the_form_is_protected_against_csrf(survey_path):
    browser = Client(enforce_csrf_checks=True)

    refused = browser.post(survey_path, {"score": "5"})
    assert refused.status_code == 403
    assert not SurveyResponse.objects.exists()

    browser.get(survey_path)
    csrf = browser.cookies[settings.CSRF_COOKIE_NAME].value
    accepted = browser.post(survey_path, {"score": "5", "csrfmiddlewaretoken": csrf})
    assert accepted.status_code == 200
    assert SurveyResponse.objects.get().score == 5


def test_an_email_reply_with_a_digit_is_not_an_answer(email_thread):
    # Email surveys are answered on the page; a reply is an ordinary message.
    reply = message(email_thread, when=timezone.now(), body="5")

    assert survey_reply_record(interaction=reply) is None
    assert not SurveyResponse.objects.exists()


def test_a_portal_conversation_without_an_address_is_surveyed_with_a_link(
    client, north, north_agent, django_capture_on_commit_callbacks
):
    patient = make_patient(team=north)
    conv = conversation(
        north, channel=Channel.PORTAL, patient=patient, address="", opened=timezone.now()
    )
    assert conv.contact_index == ""
    resolve(conv, north_agent, django_capture_on_commit_callbacks)
    make_due()

    assert surveys_send_due() == 1

    survey = SurveyRequest.objects.get(conversation=conv)
    assert survey.state == SurveyRequest.State.SENT
    [(path, _token)] = LINK.findall(survey.question.body)
    assert client.post(path, {"score": "5"}).status_code == 200
    response = SurveyResponse.objects.get()
    assert (response.channel, response.score, response.comment) == (Channel.PORTAL, 5, "")


def test_a_portal_conversation_without_a_patient_is_not_surveyed(north, north_agent):
    conv = conversation(north, channel=Channel.PORTAL, address="", opened=timezone.now())

    conversation_resolved.send(sender=Conversation, conversation=conv, actor=north_agent)

    survey = SurveyRequest.objects.get(conversation=conv)
    assert (survey.state, survey.skip_reason) == ("skipped", "no_contact_point")


def test_the_skip_rules_hold_on_email(
    patient, mailbox, north, north_agent, email_thread, django_capture_on_commit_callbacks
):
    urgent = conversation(
        north,
        channel=Channel.EMAIL,
        patient=patient,
        account=mailbox,
        address=EMAIL,
        opened=timezone.now(),
        priority=Conversation.Priority.URGENT,
    )
    later = conversation(
        north,
        channel=Channel.EMAIL,
        patient=patient,
        account=mailbox,
        address=EMAIL,
        opened=timezone.now(),
    )

    resolve(urgent, north_agent, django_capture_on_commit_callbacks)
    resolve(later, north_agent, django_capture_on_commit_callbacks)

    assert SurveyRequest.objects.get(conversation=urgent).skip_reason == "urgent"
    # The patient was surveyed on email_thread moments ago.
    assert SurveyRequest.objects.get(conversation=later).skip_reason == "recent_survey"


def test_a_link_answer_counts_in_the_kpi_csat_figures(client, survey_path, north, email_thread):
    client.post(survey_path, {"score": "4", "comment": COMMENT})
    today = kpi_today()
    expected = {
        "surveys_sent": 1,
        "responses": 1,
        "mean": 4.0,
        "satisfied_share": 1.0,
        "ces_responses": 0,
        "ces_mean": None,
    }

    live = kpi_report(since=today, until=today, team_ids=[north.pk], channel=Channel.EMAIL)
    assert live["period"]["csat"] == expected
    assert (
        kpi_report(since=today, until=today, team_ids=[north.pk], channel=Channel.SMS)["period"][
            "csat"
        ]["responses"]
        == 0
    )
    # The same answer a day later, from the nightly rollup instead of live.
    yesterday = timezone.now() - timedelta(days=1)
    SurveyRequest.objects.update(sent_at=yesterday)
    SurveyResponse.objects.update(received_at=yesterday)
    day = yesterday.astimezone(kpi_settings().time_zone).date()
    kpi_rollup_days(first_day=day, last_day=day)
    rolled_up = kpi_report(since=day, until=day, team_ids=[north.pk])
    assert rolled_up["sources"]["rolled_up_days"] == 1
    assert rolled_up["sources"]["live_days"] == 0
    assert rolled_up["period"]["csat"] == expected


def test_a_link_answer_is_not_new_contact_for_fcr(client, survey_path, north, email_thread):
    client.post(survey_path, {"score": "1", "comment": "Nobody called me back"})
    today = kpi_today()

    figures = kpi_report(since=today, until=today, team_ids=[north.pk])["period"]

    assert figures["conversations"]["resolved"] == 1
    assert figures["conversations"]["fcr"] == 1
    assert Interaction.objects.filter(direction=Interaction.Direction.INBOUND).count() == 1


def test_the_request_log_names_the_route_not_the_token(client, survey_path, caplog):
    token = survey_path.split("/")[2]

    with caplog.at_level("INFO", logger="contactcenter.request"):
        client.get(survey_path)

    [line] = [r for r in caplog.records if r.name == "contactcenter.request"]
    assert token not in str(line.msg) and token not in line.getMessage()
    assert "/survey/<token>/" in str(line.msg)
