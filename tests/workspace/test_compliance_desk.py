"""The compliance officer's desk through Django's test client: who may see it,
audit search and its export (the API's), the access report as page, CSV and PDF,
break-glass reviews, disclosures, chain verification in the worker's code path,
anomalies linking to their rows, the officer's own audit rows, no message body
anywhere, and query counts that do not grow with the rows on a page."""

import csv
import io
import re
import zlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance import services as compliance_services
from compliance import verification
from compliance.chain import seal_pending
from compliance.models import AuditEvent, BreakGlassGrant, Disclosure
from compliance.services import audit_record
from contactcenter import roles
from tests.factories import make_staff, token_for
from tests.workspace.compliance_fixtures import BODIES, REASON

pytestmark = pytest.mark.django_db

DESK_PAGES = (
    "/compliance/audit/",
    "/compliance/access-report/",
    "/compliance/break-glass/",
    "/compliance/disclosures/",
    "/compliance/chain/",
    "/compliance/anomalies/",
)


def officer_client(client, data):
    client.force_login(data.officer)
    return client


def audit_ids(html):
    return [int(i) for i in re.findall(r'data-audit-id="(\d+)"', html)]


def pdf_text(content):
    """The text drawn in a PDF: its content streams, inflated."""
    assert content.startswith(b"%PDF-")
    text = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", content, re.S):
        try:
            text.append(zlib.decompress(stream))
        except zlib.error:
            text.append(stream)
    return b"\n".join(text).decode("latin-1")


# --- Who may use it -------------------------------------------------------------------


@pytest.mark.parametrize("path", DESK_PAGES)
def test_the_desk_does_not_exist_for_an_agent(client, agent, path):
    client.force_login(agent)
    response = client.get(path)
    assert response.status_code == 404
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.actor_user_id, event.outcome, event.http_status) == (agent.pk, "denied", 404)


def test_signed_out_goes_to_sign_in_and_the_root_leads_an_officer_to_the_desk(
    client, compliance_officer
):
    assert client.get("/compliance/audit/")["Location"].startswith("/signin/")
    client.force_login(compliance_officer)
    assert client.get("/")["Location"] == "/compliance/"
    assert client.get("/compliance/")["Location"] == "/compliance/audit/"


def test_nav_links_only_for_compliance_officers(client, compliance_officer, agent):
    client.force_login(compliance_officer)
    page = client.get("/compliance/audit/").text
    for path in DESK_PAGES:
        assert f'href="{path}"' in page
    client.force_login(agent)
    inbox = client.get("/inbox/").text
    assert "/compliance/" not in inbox


# --- Audit search ---------------------------------------------------------------------


def test_audit_search_finds_the_agents_read_of_the_patient_and_audits_itself(client, desk_data):
    data = desk_data
    officer_client(client, data)
    response = client.get(
        "/compliance/audit/",
        {"patient": str(data.patient_id), "staff": data.agent.username, "action": "read"},
    )
    assert response.status_code == 200
    expected = list(
        AuditEvent.objects.filter(
            actor_user_id=data.agent.pk,
            action="read",
            patient_ids__contains=[str(data.patient_id)],
        )
        .order_by("-recorded_at", "-id")
        .values_list("id", flat=True)
    )
    assert expected and audit_ids(response.text) == expected
    assert f"/conversations/{data.conversation.pk}/" in response.text
    own = AuditEvent.objects.filter(actor_user_id=data.officer.pk).order_by("-id").first()
    assert own.resource_type == "audit_event" and own.purpose_of_use == "HCOMPL"
    assert own.patient_ids == [str(data.patient_id)]
    assert own.details["filters"]["actor"] == str(data.agent.pk)
    assert own.details["via"] == "workspace"


def test_audit_search_filters_by_outcome_and_time_range(client, desk_data):
    data = desk_data
    officer_client(client, data)
    denied = audit_record(
        action="read", resource_type="patient", patient_ids=[data.patient_id], outcome="denied"
    )
    page = client.get("/compliance/audit/", {"outcome": "denied"}).text
    assert denied.pk in audit_ids(page)
    assert all(AuditEvent.objects.get(pk=i).outcome == "denied" for i in audit_ids(page))
    later = timezone.localtime(timezone.now() + timedelta(minutes=5))
    empty = client.get("/compliance/audit/", {"since": later.strftime("%Y-%m-%dT%H:%M:%S")}).text
    assert audit_ids(empty) == [] and "No audit rows match" in empty


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"patient": "not-a-uuid"}, "Enter a patient id"),
        ({"staff": "nobody.here"}, "No staff member is called"),
        ({"since": "yesterday-ish"}, "Enter a date and time"),
        ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "must be after"),
    ],
)
def test_bad_search_input_says_what_is_wrong(client, compliance_officer, params, message):
    client.force_login(compliance_officer)
    response = client.get("/compliance/audit/", params)
    assert response.status_code == 400
    assert message in response.text
    event = AuditEvent.objects.filter(actor_user_id=compliance_officer.pk).order_by("-id").first()
    assert (event.outcome, event.http_status) == ("error", 400)


def test_load_more_walks_every_row_once(client, compliance_officer):
    for n in range(130):
        audit_record(action="read", resource_type="probe", resource_id=str(n))
    client.force_login(compliance_officer)
    seen, query = [], {"action": "read"}
    page = client.get("/compliance/audit/", query).text
    while True:
        ids = audit_ids(page)
        seen += ids
        cursor = re.search(r'hx-get="[^"]*cursor=([\w-]+)"', page)
        if not cursor:
            break
        page = client.get(
            "/compliance/audit/", {**query, "cursor": cursor.group(1)}, HTTP_HX_REQUEST="true"
        ).text
        assert "<html" not in page  # a fragment of rows
    expected = list(
        AuditEvent.objects.filter(action="read", recorded_at__lte=timezone.now())
        .order_by("-recorded_at", "-id")
        .values_list("id", flat=True)
    )
    # Rows the officer's own page reads added after the first page are newer than it.
    assert seen == [i for i in expected if i <= max(seen)]
    assert len(seen) >= 130 and len(seen) == len(set(seen))


def test_csv_export_is_the_apis_export_of_the_same_search(client, desk_data):
    data = desk_data
    params = {"patient": str(data.patient_id), "staff": data.agent.username}
    officer_client(client, data)
    response = client.get("/compliance/audit/export.csv", params)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="audit-events.csv"'
    mine = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    api = client.get(
        "/api/v1/audit-events/export.csv",
        {"patient": str(data.patient_id), "actor": data.agent.pk},
        **token_for(data.officer),
    )
    theirs = list(csv.reader(io.StringIO(b"".join(api.streaming_content).decode())))
    assert mine == theirs and len(mine) > 1
    export = AuditEvent.objects.filter(
        actor_user_id=data.officer.pk, action="export", details__via="workspace"
    ).get()
    assert export.patient_ids == [str(data.patient_id)]


# --- Patient access report ------------------------------------------------------------


def test_access_report_shows_who_when_path_and_break_glass_reason(client, desk_data):
    data = desk_data
    officer_client(client, data)
    page = client.get("/compliance/access-report/", {"patient": str(data.patient_id)})
    assert page.status_code == 200
    text = page.text
    assert data.agent.username in text and data.outsider.username in text
    assert f"/conversations/{data.conversation.pk}/" in text
    assert "Staff workspace" in text
    assert REASON in text
    event = AuditEvent.objects.filter(
        actor_user_id=data.officer.pk, resource_type="access_report"
    ).get()
    assert event.patient_ids == [str(data.patient_id)] and event.purpose_of_use == "HCOMPL"


def test_access_report_csv_and_pdf(client, desk_data):
    data = desk_data
    officer_client(client, data)
    query = {"patient": str(data.patient_id)}
    response = client.get("/compliance/access-report/export.csv", query)
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_outsider = [r for r in rows if r["actor_username"] == data.outsider.username]
    assert by_outsider and all(r["break_glass_reason"] == REASON for r in by_outsider)
    assert {r["via"] for r in by_outsider} == {"workspace"}
    pdf = client.get("/compliance/access-report/export.pdf", query)
    assert pdf["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert data.agent.username in text and data.outsider.username in text
    assert "Emergency access, reason given" in text
    exports = AuditEvent.objects.filter(
        actor_user_id=data.officer.pk, resource_type="access_report", action="export"
    )
    assert sorted(e.details["format"] for e in exports) == ["csv", "pdf"]


def test_access_report_refuses_an_unknown_patient(client, compliance_officer):
    client.force_login(compliance_officer)
    response = client.get(
        "/compliance/access-report/", {"patient": "3f2b6c1e-0000-4000-8000-000000000000"}
    )
    assert response.status_code == 400 and "No patient has this id." in response.text
    response = client.get("/compliance/access-report/export.pdf", {"patient": "x"})
    assert response.status_code == 400


# --- Break-glass reviews ------------------------------------------------------------


def test_queue_shows_the_grant_its_reason_and_what_was_viewed(client, desk_data):
    data = desk_data
    officer_client(client, data)
    page = client.get("/compliance/break-glass/").text
    assert REASON in page and data.outsider.username in page
    viewed = AuditEvent.objects.filter(
        actor_user_id=data.outsider.pk,
        patient_ids__contains=[str(data.patient_id)],
        recorded_at__gte=data.grant.granted_at,
        recorded_at__lt=data.grant.expires_at,
    ).count()
    assert viewed >= 2
    assert f"What was viewed during it ({viewed} audit rows)" in page
    link = re.search(r'href="([^"]+)" data-window-link', page).group(1).replace("&amp;", "&")
    window = client.get(link).text
    assert len(audit_ids(window)) == viewed
    event = AuditEvent.objects.filter(
        actor_user_id=data.officer.pk, resource_type="break_glass_grant"
    ).get()
    assert event.patient_ids == [str(data.patient_id)]


def test_an_overdue_review_says_so_in_words(client, desk_data, settings):
    data = desk_data
    officer_client(client, data)
    assert "Overdue" not in client.get("/compliance/break-glass/").text
    BreakGlassGrant.objects.filter(pk=data.grant.pk).update(
        granted_at=timezone.now() - timedelta(hours=settings.BREAK_GLASS_REVIEW_HOURS + 1),
        expires_at=timezone.now() - timedelta(hours=settings.BREAK_GLASS_REVIEW_HOURS),
    )
    page = client.get("/compliance/break-glass/").text
    assert "Overdue: review was due" in page and "1 review on this page is overdue" in page
    assert "state-overdue" in page


def test_review_as_justified_and_refer_needs_a_note(client, desk_data):
    data = desk_data
    officer_client(client, data)
    url = f"/compliance/break-glass/{data.grant.pk}/review/"
    refused = client.post(url, {"review_outcome": "needs_follow_up"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400 and "Add a note" in refused.text
    data.grant.refresh_from_db()
    assert data.grant.reviewed_at is None
    saved = client.post(
        url,
        {"review_outcome": "needs_follow_up", "review_comment": "Ask the South lead"},
        HTTP_HX_REQUEST="true",
    )
    assert saved.status_code == 200 and "Referred for follow-up" in saved.text
    final = client.post(url, {"review_outcome": "appropriate"})
    assert final.status_code == 302
    data.grant.refresh_from_db()
    assert (data.grant.review_outcome, data.grant.reviewed_by_id) == (
        "appropriate",
        data.officer.pk,
    )
    again = client.post(url, {"review_outcome": "appropriate"}, HTTP_HX_REQUEST="true")
    assert again.status_code == 409 and "reviewed already" in again.text
    assert "Waiting" in client.get("/compliance/break-glass/").text
    assert str(data.grant.pk) not in client.get("/compliance/break-glass/").text
    assert "Justified" in client.get("/compliance/break-glass/?show=all").text


def test_nobody_reviews_their_own_grant(client, compliance_officer, patient):
    grant = compliance_services.break_glass_grant(
        user=compliance_officer, patient_id=patient.pk, reason=REASON
    )
    client.force_login(compliance_officer)
    response = client.post(
        f"/compliance/break-glass/{grant.pk}/review/",
        {"review_outcome": "appropriate"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 409 and "their own" in response.text


# --- Disclosures --------------------------------------------------------------------


def test_record_a_disclosure_and_see_it_listed(client, desk_data):
    data = desk_data
    officer_client(client, data)
    url = f"/compliance/disclosures/?patient={data.patient_id}"
    response = client.post(
        url,
        {
            "disclosed_at": "2026-11-30T09:15",
            "recipient_name": "Dr. Ana Ruiz, Lakeside Clinic",
            "recipient_address": "",
            "description": "Lab results of October",
            "purpose": "Requested by the patient's lawyer",
        },
    )
    assert response.status_code == 302
    listed = client.get(response["Location"]).text
    assert "Disclosure recorded." in listed and "Lakeside Clinic" in listed
    assert Disclosure.objects.filter(patient_id=data.patient_id).count() == 2
    created = AuditEvent.objects.filter(
        actor_user_id=data.officer.pk, resource_type="disclosure", action="create"
    ).get()
    assert created.patient_ids == [str(data.patient_id)]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("disclosed_at", "2999-01-01T00:00", "not in the future"),
        ("disclosed_at", "last week", "Enter when it was disclosed"),
        ("recipient_name", "", "Enter who received it"),
        ("recipient_name", "x" * 201, "at most 200 characters"),
        ("purpose", "", "Say why it was disclosed"),
    ],
)
def test_a_bad_disclosure_says_why_and_writes_nothing(client, desk_data, field, value, message):
    data = desk_data
    officer_client(client, data)
    form = {
        "disclosed_at": "2026-11-30T09:15",
        "recipient_name": "Lakeside Clinic",
        "description": "Lab results",
        "purpose": "Continuity",
        field: value,
    }
    before = Disclosure.objects.count()
    response = client.post(f"/compliance/disclosures/?patient={data.patient_id}", form)
    assert response.status_code == 400
    assert message in response.text and "The disclosure was not recorded" in response.text
    assert Disclosure.objects.count() == before


def test_disclosures_of_an_unknown_patient(client, compliance_officer):
    client.force_login(compliance_officer)
    response = client.get(
        "/compliance/disclosures/", {"patient": "3f2b6c1e-0000-4000-8000-000000000000"}
    )
    assert response.status_code == 400 and "No patient has this id." in response.text


# --- Chain ------------------------------------------------------------------------------


def test_verification_reports_progress_and_is_the_last_verification(
    client, compliance_officer, settings
):
    for n in range(4500):
        audit_record(action="read", resource_type="probe", resource_id=str(n))
    seal_pending()
    client.force_login(compliance_officer)
    assert "Never verified." in client.get("/compliance/chain/").text
    run_id = verification.verification_start(user=compliance_officer)
    queued = client.get(f"/compliance/chain/runs/{run_id}/").text
    assert "Queued" in queued and 'hx-trigger="every 1s"' in queued
    seen = []
    original = verification._save

    def spy(run, state):
        seen.append((state["state"], state["checked"]))
        original(run, state)

    verification._save = spy
    try:
        verification.verification_run(run_id=run_id, user_id=compliance_officer.pk)
    finally:
        verification._save = original
    assert ("running", 2000) in seen and ("running", 4000) in seen
    done = client.get(f"/compliance/chain/runs/{run_id}/").text
    assert "events verified" in done and "every 1s" not in done
    status = client.get("/compliance/chain/").text
    assert "OK" in status and "Never verified." not in status
    assert verification.current_run() is None


def test_a_broken_chain_is_reported(client, compliance_officer):
    for n in range(5):
        audit_record(action="read", resource_type="probe", resource_id=str(n))
    seal_pending()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")
        cursor.execute(
            "UPDATE compliance_auditevent SET resource_id = 'edited' "
            "WHERE id = (SELECT min(id) FROM compliance_auditevent)"
        )
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")
    client.force_login(compliance_officer)
    run_id = verification.verification_start(user=compliance_officer)
    verification.verification_run(run_id=run_id, user_id=compliance_officer.pk)
    text = client.get(f"/compliance/chain/runs/{run_id}/").text
    assert "Broken" in text and "edited" in text


# --- Anomalies --------------------------------------------------------------------------


def test_anomalies_link_to_the_rows_behind_them(client, desk_data):
    data = desk_data
    officer_client(client, data)
    today = compliance_services.practice_today()
    page = client.get("/compliance/anomalies/", {"day": today.isoformat()})
    assert page.status_code == 200 and "Break-glass access" in page.text
    # The break-glass finding's link (after 20:00 the day has an after-hours one too).
    finding = re.search(
        r'data-finding="break_glass_outside_team">.*?href="([^"]+)" data-finding-link',
        page.text,
        re.S,
    )
    link = finding.group(1)
    link = link.replace("&amp;", "&")
    query = parse_qs(urlsplit(link).query)
    assert query["action"] == ["break_glass"] and query["staff"] == [str(data.outsider.pk)]
    rows = audit_ids(client.get(link).text)
    expected = list(
        AuditEvent.objects.filter(actor_user_id=data.outsider.pk, action="break_glass")
        .order_by("-recorded_at", "-id")
        .values_list("id", flat=True)
    )
    assert rows == expected and len(rows) == 1


def test_anomalies_refuse_a_future_day(client, compliance_officer):
    client.force_login(compliance_officer)
    tomorrow = compliance_services.practice_today() + timedelta(days=1)
    response = client.get("/compliance/anomalies/", {"day": tomorrow.isoformat()})
    assert response.status_code == 400 and "has not begun" in response.text


# --- Never a message body --------------------------------------------------------------


def test_no_page_export_or_pdf_shows_a_message_body(client, desk_data):
    data = desk_data
    officer_client(client, data)
    patient = str(data.patient_id)
    today = compliance_services.practice_today().isoformat()
    html_pages = [
        "/compliance/audit/",
        f"/compliance/audit/?patient={patient}",
        f"/compliance/access-report/?patient={patient}",
        "/compliance/break-glass/?show=all",
        f"/compliance/disclosures/?patient={patient}",
        "/compliance/chain/",
        f"/compliance/anomalies/?day={today}",
    ]
    outputs = {}
    for path in html_pages:
        response = client.get(path)
        assert response.status_code == 200, path
        outputs[path] = response.text
    for path in ("/compliance/audit/export.csv", "/compliance/access-report/export.csv"):
        response = client.get(path, {"patient": patient})
        outputs[path] = b"".join(response.streaming_content).decode()
    outputs["pdf"] = pdf_text(
        client.get("/compliance/access-report/export.pdf", {"patient": patient}).content
    )
    # The pages did show the conversation's trail (so the check is not vacuous)...
    assert str(data.conversation.pk) in outputs[f"/compliance/audit/?patient={patient}"]
    assert data.agent.username in outputs["pdf"]
    # ...and none of its message text.
    for where, text in outputs.items():
        for body in BODIES:
            assert body not in text, where
            assert body.split()[-1] not in text, where


# --- Query counts -------------------------------------------------------------------------


def count_queries(client, path, **params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, params)
    assert response.status_code == 200
    return len(queries)


def test_list_pages_query_counts_do_not_grow_with_rows(client, compliance_officer, north):
    from tests.factories import make_patient

    patients = [make_patient(team=north, phones=(f"+1415555{n:04d}",)) for n in range(2)]
    staff = [make_staff(f"agent{n}", role=roles.AGENT, teams=[north]) for n in range(2)]
    client.force_login(compliance_officer)

    def grow(n):
        for i in range(n):
            audit_record(
                action="read",
                resource_type="patient",
                patient_ids=[patients[0].pk],
                actor=staff[i % 2],
                details={"path": f"/p/{i}/", "via": "workspace"},
            )
            grant = compliance_services.break_glass_grant(
                user=staff[i % 2], patient_id=patients[i % 2].pk, reason=REASON
            )
            compliance_services.disclosure_create(
                patient_id=patients[0].pk,
                disclosed_at=grant.granted_at,
                recipient_name="Clinic",
                description="Results",
                purpose="Care",
                created_by=staff[i % 2],
            )

    pages = [
        ("/compliance/audit/", {}),
        ("/compliance/access-report/", {"patient": str(patients[0].pk)}),
        ("/compliance/break-glass/", {"show": "all"}),
        ("/compliance/disclosures/", {"patient": str(patients[0].pk)}),
        ("/compliance/anomalies/", {"day": compliance_services.practice_today().isoformat()}),
    ]
    grow(2)
    few = [count_queries(client, path, **params) for path, params in pages]
    grow(18)
    many = [count_queries(client, path, **params) for path, params in pages]
    assert few == many


def test_the_waiting_queue_runs_oldest_first_in_keyset_pages(client, compliance_officer, patient):
    from workspace.compliance_desk import GRANT_PAGE_SIZE

    staff = make_staff("grabber", role=roles.AGENT)
    grants = [
        compliance_services.break_glass_grant(user=staff, patient_id=patient.pk, reason=REASON)
        for _ in range(GRANT_PAGE_SIZE + 3)
    ]
    client.force_login(compliance_officer)
    first = client.get("/compliance/break-glass/").text
    ids = re.findall(r'data-grant="([\w-]+)"', first)
    assert ids == [str(g.pk) for g in grants[:GRANT_PAGE_SIZE]]
    cursor = re.search(r'hx-get="[^"]*cursor=([\w-]+)"', first).group(1)
    rest = client.get(
        "/compliance/break-glass/", {"show": "open", "cursor": cursor}, HTTP_HX_REQUEST="true"
    ).text
    assert re.findall(r'data-grant="([\w-]+)"', rest) == [str(g.pk) for g in grants[-3:]]
    newest_first = client.get("/compliance/break-glass/", {"show": "all"}).text
    assert re.findall(r'data-grant="([\w-]+)"', newest_first)[0] == str(grants[-1].pk)


def test_a_rows_staff_link_searches_that_staff_members_rows(client, desk_data):
    data = desk_data
    officer_client(client, data)
    page = client.get("/compliance/audit/", {"patient": str(data.patient_id)}).text
    assert f'href="?staff={data.outsider.pk}"' in page
    theirs = client.get("/compliance/audit/", {"staff": str(data.outsider.pk)}).text
    expected = list(
        AuditEvent.objects.filter(actor_user_id=data.outsider.pk)
        .order_by("-recorded_at", "-id")
        .values_list("id", flat=True)
    )
    assert audit_ids(theirs) == expected
