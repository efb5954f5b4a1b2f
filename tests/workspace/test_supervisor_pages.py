"""The supervisor's pages through Django's test client: who gets them, the team
board and reassignment through channels_app's service, the KPI page and its
drill-down against the API's numbers, rules and SLA policies with the API's
validation, the dry run that writes nothing, audit rows, and query counts that
do not grow with the rows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Conversation, Interaction
from channels_app.services import conversation_assign, conversation_resolve
from compliance.models import AuditEvent
from contactcenter import roles
from escalation import services as escalation_services
from escalation.models import Escalation, EscalationRule, SlaPolicy
from tests.factories import make_staff, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(north):
    return make_staff("lead.north", role=roles.SUPERVISOR, teams=[north], totp=True)


@pytest.fixture
def admin_user(db):
    return make_staff("the.admin", role=roles.ADMIN)


def _queries(client, path):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


def _due(conversation, minutes):
    Conversation.objects.filter(pk=conversation.pk).update(
        sla_due_at=timezone.now() + timedelta(minutes=minutes)
    )


# --- Who gets the pages ------------------------------------------------------------------


def test_agents_get_no_supervisor_pages_and_no_links(client, agent):
    client.force_login(agent)
    for path in ("/supervisor/board/", "/supervisor/kpis/", "/supervisor/rules/"):
        assert client.get(path).status_code == 403
    assert "Team board" not in client.get("/inbox/").text


def test_supervisors_get_the_links_in_the_top_bar(client, lead):
    client.force_login(lead)
    page = client.get("/inbox/").text
    assert 'href="/supervisor/board/"' in page and 'href="/supervisor/kpis/"' in page


# --- The team board ----------------------------------------------------------------------


def test_board_shows_load_availability_breaches_and_escalations_and_audits_patients(
    client, lead, agent, make_sms_conversation, south
):
    escalation_services.staff_availability_set(user=agent, availability="busy")
    late, soon, other = (make_sms_conversation(n) for n in (1, 2, 3))
    theirs = make_sms_conversation(9, team=south)
    _due(late, -30)
    _due(soon, 20)
    _due(theirs, -5)
    conversation_assign(conversation=other, assignee=agent, actor=lead)
    escalation_services.escalation_manual_create(
        conversation=soon, actor=lead, reason="Patient asked for a supervisor"
    )

    client.force_login(lead)
    page = client.get("/supervisor/board/").text

    agent_row = page[page.index('data-agent="agent.north"') :][:900]
    assert "Busy" in agent_row and '<td data-open data-label="Open">1</td>' in agent_row
    assert "1 breached" in page
    assert page.index("Pat1 Lovelace") < page.index("Pat2 Lovelace")
    assert "Overdue by 30 min" in page or "Overdue by 29 min" in page
    assert "Patient asked for a supervisor" in page and "Not acknowledged" in page
    assert "Pat9" not in page
    event = AuditEvent.objects.filter(
        actor_user_id=lead.pk, details__page="team_board", resource_type="conversation"
    ).get()
    assert set(event.patient_ids) == {str(late.patient_id), str(soon.patient_id)}


def test_last_activity_is_the_agents_latest_audited_request(client, lead, agent):
    client.force_login(lead)
    before = client.get("/supervisor/board/").text
    from django.test import Client

    agent_client = Client()
    agent_client.force_login(agent)
    agent_client.get("/inbox/")
    after = client.get("/supervisor/board/").text

    def agent_row(page):
        return page[page.index('data-agent="agent.north"') :].split("</tr>")[0]

    assert "No activity" in agent_row(before)
    assert "<time datetime=" in agent_row(after) and "No activity" not in agent_row(after)


def test_reassign_goes_through_the_assign_service_and_answers_the_board(
    client, lead, agent, make_sms_conversation
):
    conversation = make_sms_conversation(1)
    _due(conversation, 10)
    client.force_login(lead)

    response = client.post(
        "/supervisor/board/reassign/",
        {"conversation": str(conversation.pk), "assignee": str(agent.pk)},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 200
    assert "Pat1 Lovelace: assigned to agent.north." in response.text
    conversation.refresh_from_db()
    assert conversation.assignee == agent
    assert Interaction.objects.filter(
        conversation=conversation,
        kind=Interaction.Kind.EVENT,
        metadata__change__startswith="assigned",
    ).exists()
    assert AuditEvent.objects.filter(
        actor_user_id=lead.pk, action="update", resource_id=str(conversation.pk)
    ).exists()


def test_reassign_refusals_say_why_and_change_nothing(client, lead, make_sms_conversation, south):
    conversation = make_sms_conversation(1)
    outsider = make_staff("south.agent", role=roles.AGENT, teams=[south])
    theirs = make_sms_conversation(2, team=south)
    client.force_login(lead)

    not_member = client.post(
        "/supervisor/board/reassign/",
        {"conversation": str(conversation.pk), "assignee": str(outsider.pk)},
        headers={"HX-Request": "true"},
    )
    not_ours = client.post(
        "/supervisor/board/reassign/",
        {"conversation": str(theirs.pk), "assignee": str(lead.pk)},
        headers={"HX-Request": "true"},
    )
    garbage = client.post(
        "/supervisor/board/reassign/",
        {"conversation": "not-a-uuid", "assignee": "x"},
        headers={"HX-Request": "true"},
    )

    assert not_member.status_code == 409
    assert "must be a member of the conversation&#x27;s team" in not_member.text
    assert not_ours.status_code == 404 and garbage.status_code == 404
    conversation.refresh_from_db()
    theirs.refresh_from_db()
    assert conversation.assignee is None and theirs.assignee is None


def test_board_costs_the_same_queries_for_3_or_12_conversations(
    client, lead, agent, make_sms_conversation
):
    def add(numbers):
        for n in numbers:
            conversation = make_sms_conversation(n)
            _due(conversation, n - 5)
            conversation_assign(conversation=conversation, assignee=agent, actor=lead)
            escalation_services.escalation_manual_create(
                conversation=conversation, actor=lead, reason=f"reason {n}"
            )

    add(range(3))
    client.force_login(lead)
    client.get("/supervisor/board/")
    few = (_queries(client, "/supervisor/board/"), _queries(client, "/supervisor/board/live/"))
    add(range(3, 12))
    make_staff("another.agent", role=roles.AGENT, teams=[agent.groups.first().team])
    many = (_queries(client, "/supervisor/board/"), _queries(client, "/supervisor/board/live/"))
    assert few == many


# --- KPIs and the drill-down ------------------------------------------------------------


def _resolved_today(make_sms_conversation, agent, numbers, *, escalate=False, reopen=False):
    made = []
    for n in numbers:
        conversation = make_sms_conversation(n)
        if escalate:
            escalation_services.escalation_manual_create(
                conversation=conversation, actor=agent, reason="escalated"
            )
        conversation_resolve(conversation=conversation, actor=agent)
        if reopen:
            from channels_app.services import conversation_reopen

            conversation_reopen(conversation=conversation, actor=agent)
            conversation_resolve(conversation=conversation, actor=agent)
        made.append(conversation)
    return made


def test_kpi_page_shows_the_api_figures_with_charts_and_a_csv(
    client, lead, agent, make_sms_conversation
):
    _resolved_today(make_sms_conversation, agent, range(3))
    _resolved_today(make_sms_conversation, agent, range(3, 5), escalate=True)
    api = client.get("/api/v1/reports/kpis/", **token_for(lead)).json()
    client.force_login(lead)

    page = client.get("/supervisor/kpis/").text
    csv_answer = client.get("/supervisor/kpis/export.csv")

    resolved = api["period"]["conversations"]["resolved"]
    assert resolved == 5
    value = f'<span class="figure-value">{resolved}</span>'
    assert f'{value} <span class="figure-label">Conversations resolved' in page
    assert page.count("<svg") == 6 and page.count("<title id=") == 6 and "<desc id=" in page
    assert "Median" in page and "p90" in page
    assert csv_answer.status_code == 200 and csv_answer["Content-Type"].startswith("text/csv")
    assert csv_answer.content.decode().splitlines()[0].startswith("scope,start,end")


def test_kpi_page_says_where_todays_rollup_ends(client, lead, agent, make_sms_conversation):
    from datetime import datetime, time

    from django.utils.formats import date_format

    from reporting.selectors import kpi_settings, kpi_today
    from reporting.services import kpi_rollup_intraday

    _resolved_today(make_sms_conversation, agent, range(3))
    zone = kpi_settings().time_zone
    # A run at 23:40 of today, whatever the clock says: the rollup holds until 23:30.
    kpi_rollup_intraday(now=datetime.combine(kpi_today(), time(23, 40), tzinfo=zone))
    client.force_login(lead)

    page = client.get("/supervisor/kpis/").text

    until = date_format(datetime.combine(kpi_today(), time(23, 30)), "D j M H:i")
    assert f"and up to {until} from the intraday rollup, computed now after it" in page
    assert (
        '<span class="figure-value">3</span> <span class="figure-label">Conversations resolved'
        in page
    )


def test_kpi_page_refuses_bad_input_with_the_api_words(client, lead, south):
    client.force_login(lead)
    backwards = client.get("/supervisor/kpis/?since=2025-03-09&until=2025-03-01")
    other_team = client.get(f"/supervisor/kpis/?team={south.pk}")
    drill = client.get("/supervisor/kpis/conversations/?figure=happiness")

    assert backwards.status_code == 400 and "since must not be after until." in backwards.text
    assert other_team.status_code == 400 and "your own teams" in other_team.text
    assert drill.status_code == 400 and "Pick one of" in drill.text


def test_drilldown_lists_exactly_the_conversations_the_api_counts_and_audits_them(
    client, lead, agent, make_sms_conversation
):
    plain = _resolved_today(make_sms_conversation, agent, range(3))
    escalated = _resolved_today(make_sms_conversation, agent, range(3, 5), escalate=True)
    reopened = _resolved_today(make_sms_conversation, agent, range(5, 7), reopen=True)
    make_sms_conversation(20)  # open: in no resolved figure
    api = client.get("/api/v1/reports/kpis/", **token_for(lead)).json()["period"]
    client.force_login(lead)

    expected = {
        "resolved": plain + escalated + reopened,
        "escalated": escalated,
        "resolved_without_escalation": plain + reopened,
        "reopened": reopened,
        "fcr": plain + escalated,
        "not_fcr": reopened,
    }
    for figure, conversations in expected.items():
        page = client.get(f"/supervisor/kpis/conversations/?figure={figure}").text
        listed = {c.pk for c in Conversation.objects.all() if f'data-conversation="{c.pk}"' in page}
        counted = (
            api["conversations"]["resolved"] - api["conversations"]["fcr"]
            if figure == "not_fcr"
            else api["conversations"][figure]
        )
        assert listed == {c.pk for c in conversations}, figure
        assert len(listed) == counted, figure
        assert f"<strong data-reported>{counted}</strong>" in page
    event = AuditEvent.objects.filter(
        actor_user_id=lead.pk, details__page="kpi_drilldown", details__figure="reopened"
    ).get()
    assert sorted(event.patient_ids) == sorted(str(c.patient_id) for c in reopened)


def test_drilldown_obeys_team_access(client, admin_user, agent, make_sms_conversation):
    _resolved_today(make_sms_conversation, agent, range(2))
    client.force_login(admin_user)
    page = client.get("/supervisor/kpis/conversations/?figure=resolved").text
    assert "2 of them are outside the teams you may see" in page
    assert "Pat0" not in page and "Pat1" not in page


def test_kpis_and_drilldown_cost_the_same_queries_for_3_or_12_conversations(
    client, lead, agent, make_sms_conversation
):
    _resolved_today(make_sms_conversation, agent, range(3))
    client.force_login(lead)
    path = "/supervisor/kpis/conversations/?figure=resolved"
    client.get(path)
    few = (_queries(client, "/supervisor/kpis/"), _queries(client, path))
    _resolved_today(make_sms_conversation, agent, range(3, 12))
    many = (_queries(client, "/supervisor/kpis/"), _queries(client, path))
    assert few == many


def test_drilldown_pages_by_keyset(client, lead, agent, make_sms_conversation, settings):
    import workspace.supervisor

    made = _resolved_today(make_sms_conversation, agent, range(5))
    client.force_login(lead)
    original = workspace.supervisor.DRILLDOWN_PAGE_SIZE
    workspace.supervisor.DRILLDOWN_PAGE_SIZE = 2
    try:
        seen = []
        path = "/supervisor/kpis/conversations/?figure=resolved"
        while path:
            page = client.get(path).text
            seen += [c.pk for c in made if f'data-conversation="{c.pk}"' in page]
            marker = 'href="/supervisor/kpis/conversations/?'
            path = ""
            if 'rel="next"' in page:
                start = page.index(marker) + len('href="')
                path = page[start : page.index('"', start)].replace("&amp;", "&")
    finally:
        workspace.supervisor.DRILLDOWN_PAGE_SIZE = original
    assert sorted(seen) == sorted(c.pk for c in made) and len(seen) == 5


# --- Rules, SLA policies and the dry run -------------------------------------------------


def test_supervisors_read_rules_but_only_admins_change_them_as_in_the_api(client, lead, admin_user):
    rule = escalation_services.rule_create(
        name="Refunds", conditions={"phrases": ["refund"]}, actions={}
    )
    client.force_login(lead)
    page = client.get("/supervisor/rules/").text
    assert "Refunds" in page and f"/supervisor/rules/{rule.pk}/" not in page
    assert client.post(f"/supervisor/rules/{rule.pk}/", {"name": "x"}).status_code == 403


def test_admin_rule_form_refuses_what_the_api_refuses_with_its_words(client, admin_user):
    client.force_login(admin_user)
    bad = client.post(
        "/supervisor/rules/new/",
        {
            "name": "Billing anger",
            "order": "50",
            "active": "on",
            "conditions": '{"phrases": ["lawyer", ""], "sentiment_at_or_below": -3}',
            "actions": "{}",
        },
    )
    not_json = client.post(
        "/supervisor/rules/new/",
        {"name": "x", "order": "1", "conditions": "{phrases", "actions": "{}"},
    )
    good = client.post(
        "/supervisor/rules/new/",
        {
            "name": "Billing anger",
            "order": "50",
            "active": "on",
            "conditions": '{"phrases": ["lawyer"]}',
            "actions": '{"set_priority": "high"}',
        },
    )

    assert bad.status_code == 400
    assert "sentiment_at_or_below: must be a number from -1 to 1, got -3." in bad.text
    assert "phrase 2 is empty" in bad.text
    assert not_json.status_code == 400 and "Not valid JSON" in not_json.text
    assert good.status_code == 302
    rule = EscalationRule.objects.get(name="Billing anger")
    assert rule.conditions == {"phrases": ["lawyer"]} and rule.actions == {"set_priority": "high"}
    assert AuditEvent.objects.filter(
        resource_type="escalation_rule", action="create", outcome="success"
    ).exists()


def test_admin_edits_an_sla_policy_and_zero_is_refused(client, admin_user):
    policy = SlaPolicy.objects.get_or_create(
        priority=Conversation.Priority.HIGH,
        defaults={
            "first_response_minutes": 30,
            "next_response_minutes": 60,
            "resolution_minutes": 480,
        },
    )[0]
    client.force_login(admin_user)
    fields = {
        "first_response_minutes": "0",
        "next_response_minutes": "60",
        "resolution_minutes": "x",
    }
    refused = client.post(f"/supervisor/sla-policies/{policy.pk}/", fields)
    saved = client.post(
        f"/supervisor/sla-policies/{policy.pk}/",
        {
            "first_response_minutes": "15",
            "next_response_minutes": "45",
            "resolution_minutes": "240",
        },
    )

    assert refused.status_code == 400
    assert "Enter a whole number of business minutes." in refused.text
    assert saved.status_code == 302
    policy.refresh_from_db()
    assert (policy.first_response_minutes, policy.resolution_minutes) == (15, 240)


def test_dry_run_lists_what_the_rules_would_have_escalated_and_writes_nothing(
    client, lead, make_sms_conversation, south
):
    EscalationRule.objects.all().delete()
    rule = escalation_services.rule_create(
        name="Refunds", conditions={"phrases": ["refund"]}, actions={"set_priority": "urgent"}
    )
    escalation_services.rule_create(
        name="Breaches", conditions={"no_response_within_sla": True}, actions={}
    )
    hit = make_sms_conversation(1, body="I want a refund for the visit")
    miss = make_sms_conversation(2, body="Thanks, see you Monday")
    theirs = make_sms_conversation(3, body="Refund please", team=south)
    old = make_sms_conversation(4, body="refund from long ago")
    Interaction.objects.filter(conversation=old).update(
        occurred_at=timezone.now() - timedelta(days=9)
    )
    before = (
        Escalation.objects.count(),
        list(Conversation.objects.values_list("priority", flat=True)),
    )
    client.force_login(lead)

    page = client.get("/supervisor/rules/dry-run/").text
    one = client.get(f"/supervisor/rules/dry-run/?rule={rule.pk}").text

    assert "would have escalated <strong>1</strong> of last week" in page
    assert f'data-conversation="{hit.pk}"' in page
    assert "Rule &quot;Refunds&quot;: matched &quot;refund&quot;" in page
    for absent in (miss, theirs, old):
        assert f'data-conversation="{absent.pk}"' not in page
    assert "Breaches: about SLA breaches, not messages: not tried" in page
    assert "I want a refund for the visit" not in page
    assert f'data-conversation="{hit.pk}"' in one
    after = (
        Escalation.objects.count(),
        list(Conversation.objects.values_list("priority", flat=True)),
    )
    assert before == after
    event = AuditEvent.objects.filter(
        actor_user_id=lead.pk, resource_type="escalation_dry_run"
    ).first()
    assert event.patient_ids == [str(hit.patient_id)]
