"""The agent workspace's pages through Django's test client: sign-in with the
API's lockout and expiry rules, audit rows per page, the 404 for other teams'
conversations, replies and their refusals, and query counts that do not grow
with the rows on a page."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from channels_app.models import Interaction, OutboundMessage
from compliance.models import AuditEvent
from contactcenter.middleware import SIGNED_IN_AT
from patients.models import ContactPoint
from tests.factories import current_totp
from tests.workspace.conftest import receive_sms

pytestmark = pytest.mark.django_db


def sign_in(client, user, *, otp=None, password="correct-horse-battery-staple"):
    return client.post(
        reverse("workspace:signin"),
        {"username": user.username, "password": password, "otp": otp or ""},
    )


# --- Sign-in -----------------------------------------------------------------------


def test_sign_in_with_password_and_totp_opens_the_inbox(client, agent, settings):
    settings.MFA_REQUIRED = True
    response = sign_in(client, agent, otp=current_totp(agent))
    assert response.status_code == 302 and response["Location"] == "/inbox/"
    assert client.get("/inbox/").status_code == 200
    assert AuditEvent.objects.filter(action="login", actor_user_id=agent.pk).exists()


def test_a_wrong_code_is_refused_and_counts_towards_the_lockout(client, agent, settings):
    settings.MFA_REQUIRED = True
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = sign_in(client, agent, otp="000000")
        assert response.status_code == 401
        assert "The username, password or code is wrong." in response.text
    response = sign_in(client, agent, otp="000000")
    response = sign_in(client, agent, otp=current_totp(agent))
    assert response.status_code == 429
    assert "Too many failed logins" in response.text
    assert client.get("/inbox/").status_code == 302


def test_without_a_session_pages_send_to_sign_in_and_fragments_say_so(client, agent):
    response = client.get("/inbox/?tab=mine")
    assert response.status_code == 302
    assert response["Location"] == "/signin/?next=%2Finbox%2F%3Ftab%3Dmine"
    fragment = client.get("/inbox/rows/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 401
    assert "Your draft is kept" in fragment.text
    assert fragment["HX-Retarget"] == "#notices"


def test_a_session_ends_at_the_absolute_limit_however_active(client, agent, settings):
    client.force_login(agent)
    assert client.get("/inbox/").status_code == 200
    session = client.session
    session[SIGNED_IN_AT] = time.time() - settings.TOKEN_ABSOLUTE_SECONDS - 1
    session.save()
    assert client.get("/inbox/").status_code == 302
    assert client.get("/inbox/").status_code == 302


def test_root_goes_to_the_inbox(client, agent):
    client.force_login(agent)
    assert client.get("/")["Location"] == "/inbox/"


def test_a_compliance_officer_gets_no_inbox(client, compliance_officer):
    client.force_login(compliance_officer)
    response = client.get("/inbox/")
    assert response.status_code == 403
    assert "for care staff" in response.text


# --- Inbox ------------------------------------------------------------------------------


def test_inbox_lists_the_teams_conversations_and_audits_every_patient(
    client, agent, make_sms_conversation, south
):
    mine = [make_sms_conversation(n) for n in range(3)]
    make_sms_conversation(50, team=south, body="Other team's message")
    client.force_login(agent)
    response = client.get("/inbox/")
    assert response.status_code == 200
    for n in range(3):
        assert f"Pat{n} Lovelace" in response.text
    assert "Other team" not in response.text
    event = AuditEvent.objects.filter(
        resource_type="conversation", details__path="/inbox/", actor_user_id=agent.pk
    ).get()
    assert sorted(event.patient_ids) == sorted(str(c.patient_id) for c in mine)
    assert event.details["via"] == "workspace"


def test_inbox_tabs_and_filters(client, agent, make_sms_conversation):
    first, second = make_sms_conversation(1), make_sms_conversation(2)
    from channels_app.services import conversation_change

    conversation_change(
        conversation=first, actor=agent, actor_is_supervisor=False, changes={"assignee": agent}
    )
    client.force_login(agent)
    mine = client.get("/inbox/rows/?tab=mine").text
    assert str(first.pk) in mine and str(second.pk) not in mine
    unassigned = client.get("/inbox/rows/?tab=unassigned").text
    assert str(second.pk) in unassigned and str(first.pk) not in unassigned
    counts = client.get("/inbox/counts/").text
    assert 'Mine <span class="count">1</span>' in counts


def test_a_capped_tab_count_reads_999_plus(client, agent, make_sms_conversation, monkeypatch):
    from channels_app import selectors

    monkeypatch.setattr(selectors, "INBOX_COUNT_CAP", 1)
    make_sms_conversation(1), make_sms_conversation(2)
    client.force_login(agent)
    counts = client.get("/inbox/counts/").text
    assert 'All my teams <span class="count">999+</span>' in counts
    assert 'Mine <span class="count">0</span>' in counts


def _queries(client, path):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured)


def test_inbox_page_and_rows_cost_the_same_queries_for_3_or_12_rows(
    client, agent, make_sms_conversation
):
    for n in range(3):
        make_sms_conversation(n)
    client.force_login(agent)
    client.get("/inbox/")
    few = (_queries(client, "/inbox/"), _queries(client, "/inbox/rows/"))
    for n in range(3, 12):
        make_sms_conversation(n)
    many = (_queries(client, "/inbox/"), _queries(client, "/inbox/rows/"))
    assert few == many


# --- A conversation ---------------------------------------------------------------------


def test_conversation_page_shows_thread_and_patient_and_is_audited(
    client, agent, make_sms_conversation
):
    conversation = make_sms_conversation(7, body="My knee hurts since Monday")
    client.force_login(agent)
    response = client.get(f"/conversations/{conversation.pk}/")
    assert response.status_code == 200
    assert "My knee hurts since Monday" in response.text
    assert "Pat7 Lovelace" in response.text
    assert "Reply by SMS to +1 *** *** 0007" in response.text
    assert AuditEvent.objects.filter(
        resource_type="conversation",
        resource_id=str(conversation.pk),
        patient_ids__contains=[str(conversation.patient_id)],
        outcome="success",
    ).exists()


def test_another_teams_conversation_is_a_404_page_with_a_denied_row(
    client, outsider, make_sms_conversation
):
    conversation = make_sms_conversation(8)
    client.force_login(outsider)
    for path in (
        f"/conversations/{conversation.pk}/",
        f"/conversations/{conversation.pk}/thread/",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert "Page not found" in response.text
        assert "Can I get a refill" not in response.text
    denied = AuditEvent.objects.filter(outcome="denied", actor_user_id=outsider.pk)
    assert denied.count() == 2
    assert all(e.patient_ids == [str(conversation.patient_id)] for e in denied)
    response = client.post(f"/conversations/{conversation.pk}/reply/", {"body": "hi"})
    assert response.status_code == 404
    assert not Interaction.objects.filter(direction="outbound").exists()


def test_conversation_and_thread_queries_do_not_grow_with_messages(
    client, agent, make_sms_conversation, sms_account
):
    conversation = make_sms_conversation(9)
    client.force_login(agent)
    paths = (f"/conversations/{conversation.pk}/", f"/conversations/{conversation.pk}/thread/")
    client.get(paths[0])
    few = [_queries(client, p) for p in paths]
    for n in range(10):
        receive_sms(account=sms_account, phone="+14155550009", body=f"and another {n}")
    many = [_queries(client, p) for p in paths]
    assert few == many


# --- Replies ------------------------------------------------------------------------------


def _reply(client, conversation, body, **fields):
    return client.post(
        f"/conversations/{conversation.pk}/reply/",
        {
            "body": body,
            "mode": "reply",
            "idempotency_key": "k-" + body[:20].replace(" ", "-"),
            **fields,
        },
        HTTP_HX_REQUEST="true",
    )


def test_a_reply_is_stored_with_its_delivery_and_the_same_key_sends_once(
    client, agent, make_sms_conversation
):
    conversation = make_sms_conversation(10)
    client.force_login(agent)
    first = _reply(client, conversation, "We can refill it today.")
    assert first.status_code == 200
    assert "We can refill it today." in first.text
    assert "Queued" in first.text
    again = _reply(client, conversation, "We can refill it today.")
    assert again.status_code == 200
    assert OutboundMessage.objects.filter(interaction__conversation=conversation).count() == 1


def test_an_empty_reply_says_so_and_stores_nothing(client, agent, make_sms_conversation):
    conversation = make_sms_conversation(11)
    client.force_login(agent)
    response = _reply(client, conversation, "   ")
    assert response.status_code == 400
    assert "Write a message before sending." in response.text
    assert not Interaction.objects.filter(direction="outbound").exists()


def test_an_oversize_sms_is_refused_with_the_draft_kept(client, agent, make_sms_conversation):
    conversation = make_sms_conversation(12)
    client.force_login(agent)
    body = "x" * 1601
    response = _reply(client, conversation, body)
    assert response.status_code == 400
    assert "Too long to send: 1601 characters" in response.text
    assert body in response.text
    assert not Interaction.objects.filter(direction="outbound").exists()


def test_a_reply_to_an_opted_out_number_is_refused_and_nothing_is_stored(
    client, agent, make_sms_conversation
):
    conversation = make_sms_conversation(13)
    ContactPoint.objects.filter(patient=conversation.patient).update(sms_opted_out=True)
    client.force_login(agent)
    page = client.get(f"/conversations/{conversation.pk}/")
    assert "replied STOP" in page.text
    response = _reply(client, conversation, "Hello?")
    assert response.status_code == 409
    assert "Not sent: this number replied STOP" in response.text
    assert not Interaction.objects.filter(direction="outbound").exists()
    note = client.post(
        f"/conversations/{conversation.pk}/reply/",
        {"body": "Called instead.", "mode": "note"},
        HTTP_HX_REQUEST="true",
    )
    assert note.status_code == 200
    assert Interaction.objects.filter(kind="note", conversation=conversation).exists()


def test_the_stale_reply_guard_refuses_and_shows_the_new_message(
    client, agent, make_sms_conversation, sms_account
):
    conversation = make_sms_conversation(14, body="Is the clinic open?")
    seen = Interaction.objects.get(conversation=conversation)
    newer = receive_sms(account=sms_account, phone="+14155550014", body="Never mind, I'm fine")
    client.force_login(agent)
    response = _reply(client, conversation, "Yes, until 6.", last_seen=str(seen.pk))
    assert response.status_code == 409
    assert "The patient wrote again since you last looked" in response.text
    assert "Never mind, I&#x27;m fine" in response.text
    assert "Yes, until 6." in response.text
    assert f'value="{newer.pk}" data-last-seen' in response.text
    assert not Interaction.objects.filter(direction="outbound").exists()
    retried = _reply(client, conversation, "Glad to hear it.", last_seen=str(newer.pk))
    assert retried.status_code == 200
    assert Interaction.objects.filter(direction="outbound").count() == 1


def test_the_api_has_the_same_stale_reply_guard(client, agent, make_sms_conversation, sms_account):
    from tests.factories import token_for

    conversation = make_sms_conversation(15)
    seen = Interaction.objects.get(conversation=conversation)
    newer = receive_sms(account=sms_account, phone="+14155550015", body="Hello again")
    response = client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/",
        {"body": "Reply", "last_seen_interaction": str(seen.pk)},
        content_type="application/json",
        **token_for(agent),
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "stale_reply"
    assert error["details"] == {"latest_interaction": str(newer.pk)}
    assert not Interaction.objects.filter(direction="outbound").exists()


# --- Actions ----------------------------------------------------------------------------------


def test_assign_to_me_and_resolve_go_through_the_services(client, agent, make_sms_conversation):
    conversation = make_sms_conversation(16)
    client.force_login(agent)
    url = f"/conversations/{conversation.pk}/act/"
    response = client.post(url, {"action": "assign_me"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Assigned to you" in response.text
    response = client.post(url, {"action": "resolve"}, HTTP_HX_REQUEST="true")
    conversation.refresh_from_db()
    assert conversation.status == "resolved" and conversation.assignee_id == agent.pk
    assert Interaction.objects.filter(conversation=conversation, kind="event").count() == 2


def test_a_refused_action_says_why(client, agent, teammate, make_sms_conversation):
    conversation = make_sms_conversation(17)
    client.force_login(agent)
    url = f"/conversations/{conversation.pk}/act/"
    response = client.post(url, {"action": "snooze", "until": "2001-01-01T10:00"})
    assert response.status_code == 400
    assert "Pick a time in the future" in response.text
    response = client.post(
        url, {"action": "assign", "assignee": teammate.pk}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409
    assert "Agents may take unassigned conversations" in response.text


def test_break_glass_opens_another_teams_patient_with_a_reason_and_an_audit_row(
    client, agent, north, south
):
    from channels_app.services import conversation_open
    from compliance.models import BreakGlassGrant
    from tests.factories import make_patient

    elsewhere = make_patient(team=south, given_name="Remote", family_name="Patient")
    conversation = conversation_open(
        channel="sms", team=north, patient=elsewhere, contact_address="+14155550177"
    )
    client.force_login(agent)
    page = client.get(f"/conversations/{conversation.pk}/")
    assert "belongs to another team" in page.text and "Remote Patient" not in page.text
    url = f"/patients/{elsewhere.pk}/break-glass/"
    short = client.post(url, {"reason": "urgent"}, HTTP_HX_REQUEST="true")
    assert short.status_code == 400
    assert "at least 20 characters" in short.text
    assert not BreakGlassGrant.objects.exists()
    granted = client.post(
        url,
        {"reason": "Patient on the phone with chest pain, needs meds list"},
        HTTP_HX_REQUEST="true",
    )
    assert granted.status_code == 204 and granted["HX-Refresh"] == "true"
    assert BreakGlassGrant.objects.get().user_id == agent.pk
    assert AuditEvent.objects.filter(
        action="break_glass", purpose_of_use="ETREAT", patient_ids=[str(elsewhere.pk)]
    ).exists()
    assert "Remote Patient" in client.get(f"/conversations/{conversation.pk}/").text


def test_the_live_refresh_answers_only_the_messages_after_the_last_one_shown(
    client, agent, make_sms_conversation, sms_account
):
    import json

    conversation = make_sms_conversation(60, body="first")
    client.force_login(agent)
    page = client.get(f"/conversations/{conversation.pk}/thread/").text
    after = page.split('data-after="')[1].split('"')[0]
    url = f"/conversations/{conversation.pk}/thread/?after={after}"
    assert client.get(url).status_code == 204
    newer = receive_sms(account=sms_account, phone="+14155550060", body="second")
    response = client.get(url)
    assert response.status_code == 200
    assert "second" in response.text and "first" not in response.text
    advanced = json.loads(response["HX-Trigger-After-Settle"])["thread-advanced"]
    assert advanced["lastSeen"] == advanced["lastInbound"] == str(newer.pk)
    assert client.get(f"{url[: url.index('?')]}?after={advanced['after']}").status_code == 204
    one = client.get(f"/conversations/{conversation.pk}/thread/?message={newer.pk}")
    assert one.status_code == 200 and f'id="m-{newer.pk}"' in one.text and "first" not in one.text
    bad = client.get(f"/conversations/{conversation.pk}/thread/?after=nonsense")
    assert bad.status_code == 400


def test_the_live_refresh_costs_the_same_queries_for_1_or_8_new_messages(
    client, agent, make_sms_conversation, sms_account
):
    conversation = make_sms_conversation(61, body="start")
    client.force_login(agent)

    def after_now():
        page = client.get(f"/conversations/{conversation.pk}/thread/").text
        return page.split('data-after="')[1].split('"')[0]

    def cost(new):
        after = after_now()
        for n in range(new):
            receive_sms(account=sms_account, phone="+14155550061", body=f"new {n}")
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/conversations/{conversation.pk}/thread/?after={after}")
        assert response.status_code == 200 and response.text.count('class="msg ') == new
        return len(captured)

    assert cost(1) == cost(8)
