"""The compliance officer's desk: audit search and its CSV export, the patient
access report (page, CSV, PDF), the break-glass review queue, the accounting of
disclosures, the chain status with "verify now", and the anomaly report.

Same sign-in, layout and audit rows as the agents' pages (workspace.pages,
workspace.audit); the reads and writes are the compliance app's selectors and
services behind the REST API, validated by the API's own filter and serializers.
To anyone but a compliance officer these pages do not exist (404 with a
`denied` audit row, as the API answers). Nothing here reads a message: what the
officer sees is ids, staff names, codes, times and the free text of grants and
disclosures, never message bodies.
"""

import base64
import binascii
import math
import uuid
from datetime import datetime, timedelta
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compliance import exports, selectors, services, verification
from compliance.anchoring import checkpoint_sink
from compliance.filters import AuditEventFilter
from compliance.models import AnomalyFinding, AuditEvent, BreakGlassGrant
from compliance.serializers import (
    AccessReportQuerySerializer,
    BreakGlassReviewSerializer,
    DisclosureSerializer,
)
from contactcenter import roles
from workspace.audit import page_audit
from workspace.pages import not_found, staff_page

PAGE_SIZE = 50
GRANT_PAGE_SIZE = 20
HCOMPL = AuditEvent.PurposeOfUse.HCOMPL
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


def review_due():
    """How long after a grant its review is due (BREAK_GLASS_REVIEW_HOURS); later,
    it is overdue."""
    return timedelta(hours=settings.BREAK_GLASS_REVIEW_HOURS)


REVIEW_WORDS = {
    BreakGlassGrant.ReviewOutcome.APPROPRIATE: "Justified",
    BreakGlassGrant.ReviewOutcome.INAPPROPRIATE: "Not justified",
    BreakGlassGrant.ReviewOutcome.NEEDS_FOLLOW_UP: "Referred for follow-up",
}


def compliance_page(resource_type):
    """Decorator: signed-in compliance officers only; anyone else gets the 404
    page and a `denied` audit row, as the API's role_or_404 answers."""

    def decorate(view):
        @staff_page()
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not roles.has_role(request.user, roles.COMPLIANCE):
                return not_found(request, resource_type=resource_type, resource_id="")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _audit(request, **fields):
    page_audit(request, purpose_of_use=HCOMPL, **fields)


# --- Keyset pages over (recorded_at, id), newest first ------------------------------


def _encode_cursor(row):
    raw = f"{row['recorded_at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text):
    """(recorded_at, id) from a cursor this page handed out; None otherwise."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp_text, _, id_text = raw.partition("|")
        stamp = parse_datetime(stamp_text)
        if stamp is None or stamp.tzinfo is None:
            return None
        return stamp, int(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def keyset_page(queryset, *, cursor_text, size, fields):
    """One page of `queryset` newest first after the cursor: (rows as dicts, next
    cursor or None). Each page is one range scan of (recorded_at, id)."""
    rows = queryset.order_by("-recorded_at", "-id")
    cursor = _decode_cursor(cursor_text) if cursor_text else None
    if cursor is not None:
        stamp, row_id = cursor
        rows = rows.filter(Q(recorded_at__lt=stamp) | Q(recorded_at=stamp, id__lt=row_id))
    rows = list(rows.values(*fields)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, (_encode_cursor(rows[-1]) if more else None)


def _local_input(value, *, round_up=False):
    """A datetime as a datetime-local field shows it, to the second (rounded
    up for an exclusive end, so the range still holds its last row)."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    if round_up and local.microsecond:
        local = local.replace(microsecond=0) + timedelta(seconds=1)
    return local.replace(microsecond=0, tzinfo=None).isoformat()


def audit_search_url(**params):
    """The audit search prefilled (for links from the other pages)."""
    for name in ("since", "until"):
        if isinstance(params.get(name), datetime):
            params[name] = _local_input(params[name], round_up=name == "until")
    query = {name: value for name, value in params.items() if value not in (None, "")}
    return f"{reverse('workspace:compliance-audit')}?{urlencode(query)}"


# --- Audit search ----------------------------------------------------------------------


class AuditSearchForm(forms.Form):
    """What the officer types; its values go through the API's AuditEventFilter."""

    patient = forms.CharField(required=False, label="Patient id", max_length=64)
    staff = forms.CharField(
        required=False, label="Staff member", max_length=150, help_text="Username or user id."
    )
    action = forms.ChoiceField(
        required=False, choices=[("", "Any action"), *AuditEvent.Action.choices]
    )
    outcome = forms.ChoiceField(
        required=False, choices=[("", "Any outcome"), *AuditEvent.Outcome.choices]
    )
    since = forms.CharField(required=False, label="From")
    until = forms.CharField(required=False, label="Until (not including)")

    def filter_data(self):
        """The query of AuditEventFilter, with the staff member as a user id; an
        unknown username is a form error."""
        data = {
            name: self.cleaned_data[name]
            for name in ("patient", "action", "outcome", "since", "until")
            if self.cleaned_data.get(name)
        }
        staff = self.cleaned_data.get("staff", "").strip()
        if staff:
            if staff.isdigit():
                data["actor"] = staff
            else:
                user_id = (
                    get_user_model()
                    .objects.filter(username=staff)
                    .values_list("pk", flat=True)
                    .first()
                )
                if user_id is None:
                    self.add_error("staff", f"No staff member is called {staff!r}.")
                    return None
                data["actor"] = str(user_id)
        return data


FILTER_MESSAGES = {
    "patient": "Enter a patient id (a UUID such as 3f2b…), as the audit rows show it.",
    "actor": "Enter a username or a user id.",
    "since": "Enter a date and time for “From”.",
    "until": "Enter a date and time for “Until”.",
}


def _audit_search(request):
    """(form, AuditEventFilter or None, errors, used filters) for the query string."""
    form = AuditSearchForm(request.GET or None)
    if not form.is_bound:
        return form, AuditEventFilter({}, queryset=selectors.audit_events()), [], {}
    data = form.filter_data() if form.is_valid() else None
    errors = [str(e) for errs in form.errors.values() for e in errs]
    if data is None:
        return form, None, errors, {}
    search = AuditEventFilter(data, queryset=selectors.audit_events())
    if not search.is_valid():
        for name in search.errors:
            field = "staff" if name == "actor" else name
            message = FILTER_MESSAGES.get(name, "Check this value.")
            if field in form.fields:
                form.add_error(field, message)
            errors.append(message)
        return form, None, errors, {}
    if data.get("since") and data.get("until"):
        since, until = search.form.cleaned_data["since"], search.form.cleaned_data["until"]
        if since >= until:
            form.add_error("until", "“Until” must be after “From”.")
            return form, None, ["“Until” must be after “From”."], {}
    return form, search, errors, {name: str(value)[:100] for name, value in data.items()}


AUDIT_FIELDS = (
    "id",
    "recorded_at",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "api_client_name",
    "action",
    "resource_type",
    "resource_id",
    "patient_ids",
    "outcome",
    "http_status",
    "purpose_of_use",
    "source_ip",
    "path",
    "via",
)


def _truncate(text, length):
    text = text or ""
    return text if len(text) <= length else text[: length - 1] + "…"


def audit_row_html(row):
    """One audit row of the search as a table row. Built here rather than in a
    template: a page is 50 rows of eight cells, and the template engine's
    variable lookups were most of the page's time (bench/compliance_desk.py).
    Every value is escaped."""
    e = escape
    local = timezone.localtime(row["recorded_at"])
    if row["actor_username"]:
        role = f' <span class="muted">({e(row["actor_role"])})</span>' if row["actor_role"] else ""
        # By id: it names the account even after a rename or deletion.
        staff = e(urlencode({"staff": row["actor_user_id"] or row["actor_username"]}))
        who = f'<a href="?{staff}">{e(row["actor_username"])}</a>{role}'
    elif row["api_client_name"]:
        who = f"API key {e(row['api_client_name'])}"
    else:
        who = '<span class="muted">system</span>'
    patient_ids = row["patient_ids"] or []
    patients = (
        ", ".join(
            f'<a href="?patient={e(pid)}" title="Search this patient&#x27;s rows">'
            f"{e(_truncate(pid, 9))}</a>"
            for pid in patient_ids[:3]
        )
        or '<span class="muted">none</span>'
    )
    if len(patient_ids) > 3:
        patients += f' <span class="muted">and {len(patient_ids) - 3} more</span>'
    record = e(row["resource_type"])
    if row["resource_id"]:
        record += " " + e(_truncate(row["resource_id"], 40))
    status = f' <span class="muted">{int(row["http_status"])}</span>' if row["http_status"] else ""
    via = f' <span class="muted">({e(row["via"])})</span>' if row["via"] else ""
    outcome = e(row["outcome"])
    return mark_safe(  # noqa: S308 - every value above is escaped
        f'<tr data-audit-id="{int(row["id"])}">'
        f'<td data-label="When"><time datetime="{local.isoformat()}">'
        f"{local.strftime('%Y-%m-%d %H:%M:%S')}</time></td>"
        f'<td data-label="Who">{who}</td>'
        f'<td data-label="Action">{e(row["action"])}</td>'
        f'<td data-label="Outcome"><span class="badge outcome-{outcome}">{outcome}</span>'
        f"{status}</td>"
        f'<td data-label="Record" class="mono">{record}</td>'
        f'<td data-label="Patients" class="mono">{patients}</td>'
        f'<td data-label="Through" class="mono">{e(_truncate(row["path"], 60) or "—")}{via}</td>'
        f'<td data-label="Purpose">{e(row["purpose_of_use"])}</td></tr>'
    )


def _audit_rows(request, search, used):
    from django.db.models.fields.json import KT

    queryset = search.qs.annotate(path=KT("details__path"), via=KT("details__via"))
    rows, next_cursor = keyset_page(
        queryset, cursor_text=request.GET.get("cursor"), size=PAGE_SIZE, fields=AUDIT_FIELDS
    )
    for row in rows:
        row["html"] = audit_row_html(row)
    _audit(
        request,
        resource_type="audit_event",
        patient_ids=[used["patient"]] if "patient" in used else (),
        filters=used,
        rows=len(rows),
    )
    return rows, next_cursor


def _query_without_cursor(request):
    query = request.GET.copy()
    query.pop("cursor", None)
    return query.urlencode()


@require_GET
@compliance_page("audit_event")
def audit_search(request):
    form, search, errors, used = _audit_search(request)
    context = {"form": form, "errors": errors, "query": _query_without_cursor(request)}
    status = 200
    if search is None:
        status = 400
        _audit(request, resource_type="audit_event", outcome="error", http_status=400, filters=used)
        context.update(rows=[], next_cursor=None)
    else:
        rows, next_cursor = _audit_rows(request, search, used)
        context.update(rows=rows, next_cursor=next_cursor, searched=form.is_bound)
    if request.htmx and request.GET.get("cursor"):
        return render(request, "workspace/compliance/_audit_rows.html", context, status=status)
    return render(request, "workspace/compliance/audit.html", context, status=status)


def _csv_response(stream, filename):
    response = StreamingHttpResponse(stream, content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@compliance_page("audit_event")
def audit_export(request):
    """The audit search as CSV, oldest first, streamed through the API's export
    (exports.stream_csv over a server-side cursor: flat memory)."""
    _form, search, errors, used = _audit_search(request)
    if search is None:
        _audit(
            request,
            resource_type="audit_event",
            action="export",
            outcome="error",
            http_status=400,
            filters=used,
        )
        return HttpResponse(
            " ".join(errors) or "Check the search.", status=400, content_type="text/plain"
        )
    _audit(
        request,
        resource_type="audit_event",
        action="export",
        patient_ids=[used["patient"]] if "patient" in used else (),
        filters=used,
    )
    rows = search.qs.order_by("recorded_at", "id")
    return _csv_response(exports.stream_csv(rows, exports.AUDIT_EVENT_COLUMNS), "audit-events.csv")


# --- Patient access report ---------------------------------------------------------------


class PatientForm(forms.Form):
    patient = forms.UUIDField(
        label="Patient id",
        error_messages={"invalid": FILTER_MESSAGES["patient"], "required": "Enter a patient id."},
    )


def _patient_query(request):
    """(form, patient id or None, error)."""
    form = PatientForm(request.GET if "patient" in request.GET else None)
    if not form.is_bound:
        return form, None, ""
    if not form.is_valid():
        return form, None, form.errors["patient"][0]
    patient_id = form.cleaned_data["patient"]
    if not selectors.patient_exists(patient_id=patient_id):
        form.add_error("patient", "No patient has this id.")
        return form, None, "No patient has this id."
    return form, patient_id, ""


def _access_query(request):
    """since/until through the API's AccessReportQuerySerializer: (values, error)."""
    data = {name: request.GET[name] for name in ("since", "until") if request.GET.get(name)}
    query = AccessReportQuerySerializer(data=data)
    if not query.is_valid():
        if "until" in query.errors and "since" in data and "until" in data:
            return None, "“Until” must be after “From”."
        return None, "Enter the dates as dates and times."
    return query.validated_data, ""


ACCESS_FIELDS = (
    "id",
    "recorded_at",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "api_client_name",
    "action",
    "resource_type",
    "resource_id",
    "purpose_of_use",
    "outcome",
    "http_status",
    "path",
    "via",
    "break_glass_grant_id",
)
PURPOSES = dict(AuditEvent.PurposeOfUse.choices)
ACTIONS = dict(AuditEvent.Action.choices)


def access_channel(row):
    if row.get("api_client_name"):
        return f"API key “{row['api_client_name']}”"
    if row.get("via") == "workspace":
        return "Staff workspace"
    if row.get("via") == "worker":
        return "Background worker"
    if (row.get("path") or "").startswith("/admin/"):
        return "Admin"
    if (row.get("path") or "").startswith("/api/"):
        return "API"
    return row.get("via") or "—"


def _access_rows_for_humans(rows, reasons):
    for row in rows:
        row["break_glass_reason"] = reasons.get(row["break_glass_grant_id"], "")
        row["channel"] = access_channel(row)
        row["purpose"] = PURPOSES.get(row["purpose_of_use"], row["purpose_of_use"])
        row["action_word"] = ACTIONS.get(row["action"], row["action"])
    return rows


@require_GET
@compliance_page("access_report")
def access_report(request):
    form, patient_id, error = _patient_query(request)
    query, query_error = _access_query(request)
    context = {
        "form": form,
        "patient_id": patient_id,
        "since": request.GET.get("since", ""),
        "until": request.GET.get("until", ""),
        "error": error or query_error,
        "rows": [],
        "query": _query_without_cursor(request),
    }
    if patient_id is None or query is None:
        status = 400 if form.is_bound else 200
        _audit(
            request,
            resource_type="access_report",
            outcome="error" if status == 400 else "success",
            http_status=status,
        )
        return render(request, "workspace/compliance/access.html", context, status=status)
    rows, next_cursor = keyset_page(
        selectors.access_report_rows(
            patient_id=patient_id, since=query.get("since"), until=query.get("until")
        ),
        cursor_text=request.GET.get("cursor"),
        size=PAGE_SIZE,
        fields=ACCESS_FIELDS,
    )
    _audit(
        request,
        resource_type="access_report",
        resource_id=patient_id,
        patient_ids=[patient_id],
        rows=len(rows),
    )
    reasons = selectors.break_glass_reasons(patient_id=patient_id)
    context.update(rows=_access_rows_for_humans(rows, reasons), next_cursor=next_cursor)
    if request.htmx and request.GET.get("cursor"):
        return render(request, "workspace/compliance/_access_rows.html", context)
    return render(request, "workspace/compliance/access.html", context)


ACCESS_CSV_COLUMNS = (*exports.ACCESS_REPORT_COLUMNS, "path", "via", "break_glass_grant_id")
ACCESS_CSV_HEADER = (*exports.ACCESS_REPORT_COLUMNS, "path", "via", "break_glass_reason")


def _access_export_query(request, kind):
    _form, patient_id, error = _patient_query(request)
    query, query_error = _access_query(request)
    if patient_id is None or query is None:
        _audit(
            request,
            resource_type="access_report",
            action="export",
            outcome="error",
            http_status=400,
            format=kind,
        )
        return None, HttpResponse(
            error or query_error or "Enter a patient id.", status=400, content_type="text/plain"
        )
    _audit(
        request,
        resource_type="access_report",
        resource_id=patient_id,
        patient_ids=[patient_id],
        action="export",
        format=kind,
    )
    rows = selectors.access_report_rows(
        patient_id=patient_id, since=query.get("since"), until=query.get("until")
    )
    return (patient_id, rows, query), None


@require_GET
@compliance_page("access_report")
def access_report_csv(request):
    """The report as CSV, streamed like the API's (its columns, then the path,
    the channel and the break-glass reason)."""
    found, refused = _access_export_query(request, "csv")
    if refused:
        return refused
    patient_id, rows, _query = found
    reasons = selectors.break_glass_reasons(patient_id=patient_id)

    def with_reason(row):
        return (*row[:-1], reasons.get(row[-1], ""))

    return _csv_response(
        exports.stream_csv(
            rows, ACCESS_CSV_COLUMNS, header=ACCESS_CSV_HEADER, transform=with_reason
        ),
        f"access-report-{patient_id}.csv",
    )


@require_GET
@compliance_page("access_report")
def access_report_pdf(request):
    """The report as a PDF a patient can be handed."""
    from workspace.compliance_pdf import access_report_pdf as render_pdf

    found, refused = _access_export_query(request, "pdf")
    if refused:
        return refused
    patient_id, rows, query = found
    reasons = selectors.break_glass_reasons(patient_id=patient_id)
    rows = (
        _access_rows_for_humans([dict(zip(ACCESS_FIELDS, values, strict=True))], reasons)[0]
        for values in rows.values_list(*ACCESS_FIELDS).iterator(chunk_size=2000)
    )
    content = render_pdf(
        patient_id=patient_id,
        since=query.get("since"),
        until=query.get("until"),
        rows=rows,
        practice=settings.PRACTICE_NAME,
        prepared_by=request.user.get_username(),
    )
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="access-report-{patient_id}.pdf"'
    return response


# --- Break-glass review queue -------------------------------------------------------


def _review_state(grant, now):
    if grant.reviewed_at and grant.review_outcome != BreakGlassGrant.ReviewOutcome.NEEDS_FOLLOW_UP:
        return "reviewed"
    if grant.review_outcome == BreakGlassGrant.ReviewOutcome.NEEDS_FOLLOW_UP:
        return "referred"
    return "overdue" if grant.granted_at + review_due() < now else "due"


def _grant_view(grant, now):
    viewed = getattr(grant, "viewed", None)
    if viewed is None:  # not PostgreSQL: the grant's rows one query each
        window = selectors.break_glass_window_events(grant)
        rows = [
            row
            for row in window.values(
                "id",
                "recorded_at",
                "action",
                "resource_type",
                "resource_id",
                "outcome",
                "patient_ids",
                "details",
            )
            if str(grant.patient_id) in row["patient_ids"]
        ]
        grant.viewed_count = len(rows)
        viewed = [{**row, "path": row["details"].get("path")} for row in rows]
        viewed = viewed[: selectors.BREAK_GLASS_ACTIVITY_SHOWN]
    else:
        for row in viewed:
            row["recorded_at"] = parse_datetime(row["recorded_at"])
    state = _review_state(grant, now)
    return {
        "grant": grant,
        "viewed": viewed,
        "viewed_count": grant.viewed_count or 0,
        "state": state,
        "due_at": grant.granted_at + review_due(),
        "outcome_word": REVIEW_WORDS.get(grant.review_outcome, ""),
        "can_review": state != "reviewed",
        "window_url": audit_search_url(
            patient=grant.patient_id,
            staff=grant.user_id,
            since=grant.granted_at,
            until=grant.expires_at,
        ),
    }


def _grant_page(request, show):
    grants = selectors.break_glass_queue()
    if show == "open":
        # Waiting: never reviewed, or referred for follow-up (reviewed again later).
        grants = grants.filter(
            Q(reviewed_at__isnull=True)
            | Q(review_outcome=BreakGlassGrant.ReviewOutcome.NEEDS_FOLLOW_UP)
        )
        # The work queue runs oldest first, so the overdue reviews lead it.
        grants = grants.order_by("granted_at", "id")
    cursor = _decode_grant_cursor(request.GET.get("cursor", ""))
    if cursor is not None:
        stamp, grant_id = cursor
        if show == "open":
            after = Q(granted_at__gt=stamp) | Q(granted_at=stamp, id__gt=grant_id)
        else:
            after = Q(granted_at__lt=stamp) | Q(granted_at=stamp, id__lt=grant_id)
        grants = grants.filter(after)
    page = list(grants[: GRANT_PAGE_SIZE + 1])
    more = len(page) > GRANT_PAGE_SIZE
    page = page[:GRANT_PAGE_SIZE]
    next_cursor = None
    if more:
        last = page[-1]
        raw = f"{last.granted_at.isoformat()}|{last.pk}".encode()
        next_cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return page, next_cursor


def _decode_grant_cursor(text):
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp_text, _, id_text = raw.partition("|")
        stamp = parse_datetime(stamp_text)
        return (stamp, uuid.UUID(id_text)) if stamp and stamp.tzinfo else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@require_GET
@compliance_page("break_glass_grant")
def break_glass_queue(request):
    show = "all" if request.GET.get("show") == "all" else "open"
    page, next_cursor = _grant_page(request, show)
    now = timezone.now()
    cards = [_grant_view(grant, now) for grant in page]
    _audit(
        request,
        resource_type="break_glass_grant",
        patient_ids=[grant.patient_id for grant in page],
        rows=len(page),
    )
    context = {
        "cards": cards,
        "show": show,
        "next_cursor": next_cursor,
        "overdue": sum(1 for card in cards if card["state"] == "overdue"),
        "review_due_hours": settings.BREAK_GLASS_REVIEW_HOURS,
        "outcomes": [(value, REVIEW_WORDS[value]) for value in BreakGlassGrant.ReviewOutcome],
    }
    if request.htmx and request.GET.get("cursor"):
        return render(request, "workspace/compliance/_grants.html", context)
    return render(request, "workspace/compliance/break_glass.html", context)


@require_POST
@compliance_page("break_glass_grant")
def break_glass_review(request, grant_id):
    """Record a review through the API's serializer and service."""
    grant = selectors.break_glass_queue().filter(pk=grant_id).first()
    if grant is None:
        return not_found(request, resource_type="break_glass_grant", resource_id=grant_id)
    audit = {
        "resource_type": "break_glass_grant",
        "resource_id": grant.pk,
        "patient_ids": [grant.patient_id],
        "action": "update",
    }
    review = BreakGlassReviewSerializer(
        data={
            "review_outcome": request.POST.get("review_outcome", ""),
            "review_comment": request.POST.get("review_comment", ""),
        }
    )
    error, status = "", 200
    if not review.is_valid():
        error, status = _review_error(review.errors), 400
    else:
        try:
            services.break_glass_review(
                grant=grant,
                reviewer=request.user,
                outcome=review.validated_data["review_outcome"],
                comment=review.validated_data["review_comment"],
            )
        except services.AlreadyReviewed:
            error, status = "This grant was reviewed already.", 409
        except services.SelfReview:
            error, status = "Nobody reviews their own break-glass access.", 409
    if status == 200:
        _audit(request, review_outcome=review.validated_data["review_outcome"], **audit)
    else:
        _audit(request, outcome="error", http_status=status, **audit)
    if not request.htmx:
        if status != 200:
            return render(
                request,
                "workspace/compliance/review_refused.html",
                {"error": error, "back": reverse("workspace:compliance-break-glass")},
                status=status,
            )
        return redirect(f"{reverse('workspace:compliance-break-glass')}?show=all#g-{grant.pk}")
    grant = selectors.break_glass_queue().get(pk=grant.pk)
    context = {
        "card": _grant_view(grant, timezone.now()),
        "error": error,
        "comment": request.POST.get("review_comment", "") if error else "",
        "chosen": request.POST.get("review_outcome", "") if error else "",
        "saved": status == 200,
        "outcomes": [(value, REVIEW_WORDS[value]) for value in BreakGlassGrant.ReviewOutcome],
    }
    return render(request, "workspace/compliance/_grant.html", context, status=status)


def _review_error(errors):
    if "review_outcome" in errors:
        return "Choose justified, not justified or refer for follow-up."
    if "review_comment" in errors:
        message = str(errors["review_comment"][0])
        if "Say what" in message:
            return "Add a note: say what was wrong or what follows."
        return "The note is too long: at most 2000 characters."
    return "Check the review."


# --- Accounting of disclosures --------------------------------------------------------


class DisclosureForm(forms.Form):
    """The fields of the API's DisclosureSerializer, which validates them."""

    disclosed_at = forms.CharField(label="Disclosed on")
    recipient_name = forms.CharField(label="Recipient", max_length=200)
    recipient_address = forms.CharField(
        label="Recipient's address", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    description = forms.CharField(
        label="What was disclosed", widget=forms.Textarea(attrs={"rows": 2})
    )
    purpose = forms.CharField(label="Purpose", widget=forms.Textarea(attrs={"rows": 2}))


DISCLOSURE_MESSAGES = {
    "disclosed_at": "Enter when it was disclosed, not in the future.",
    "recipient_name": "Enter who received it (at most 200 characters).",
    "description": "Describe what was disclosed.",
    "purpose": "Say why it was disclosed.",
    "recipient_address": "Check the recipient's address.",
}


@require_http_methods(["GET", "POST"])
@compliance_page("disclosure")
def disclosures(request):
    form, patient_id, error = _patient_query(request)
    context = {"form": form, "patient_id": patient_id, "error": error, "rows": []}
    entry = DisclosureForm(request.POST or None)
    context["entry"] = entry
    status = 200
    if patient_id is None:
        if form.is_bound:
            status = 400
        _audit(
            request,
            resource_type="disclosure",
            outcome="error" if status == 400 else "success",
            http_status=status,
        )
        return render(request, "workspace/compliance/disclosures.html", context, status=status)
    audit = {"resource_type": "disclosure", "patient_ids": [patient_id]}
    if request.method == "POST":
        data = DisclosureSerializer(data=_disclosure_data(request.POST))
        entry_valid, data_valid = entry.is_valid(), data.is_valid()
        if entry_valid and data_valid:
            disclosure = services.disclosure_create(
                patient_id=patient_id, created_by=request.user, **data.validated_data
            )
            _audit(request, action="create", resource_id=disclosure.pk, **audit)
            return redirect(
                f"{reverse('workspace:compliance-disclosures')}?"
                f"{urlencode({'patient': patient_id, 'recorded': disclosure.pk})}"
            )
        messages = []
        for name in DISCLOSURE_MESSAGES:
            if name in data.errors or name in entry.errors:
                messages.append(DISCLOSURE_MESSAGES[name])
                if name not in entry.errors:
                    entry.add_error(name, DISCLOSURE_MESSAGES[name])
        context["entry_errors"] = messages
        status = 400
        _audit(request, action="create", outcome="error", http_status=400, **audit)
    else:
        _audit(request, **audit)
    rows = list(selectors.disclosures_of_patient(patient_id=patient_id))
    context.update(rows=rows, recorded=request.GET.get("recorded", ""))
    return render(request, "workspace/compliance/disclosures.html", context, status=status)


def _disclosure_data(post):
    return {name: post.get(name, "") for name in DISCLOSURE_MESSAGES}


# --- Chain status ---------------------------------------------------------------------


@require_GET
@compliance_page("audit_chain")
def chain_status(request):
    last = selectors.chain_last_verification()
    head = selectors.chain_head()
    try:
        checkpoint = checkpoint_sink().latest()
    except (ImproperlyConfigured, OSError):
        # A sink misconfigured or unreadable shows as "none readable", not a 500.
        checkpoint = None
    run_id = verification.current_run()
    _audit(request, resource_type="audit_chain", resource_id=run_id or "")
    return render(
        request,
        "workspace/compliance/chain.html",
        {
            "last": last,
            "head": head,
            "checkpoint": checkpoint,
            "checkpoint_at": parse_datetime(checkpoint.at) if checkpoint else None,
            "run": _run_context(run_id) if run_id else None,
        },
    )


def _run_context(run_id):
    state = verification.run_state(run_id)
    if state is None:
        return None
    total = state.get("total") or 0
    checked = state.get("checked") or 0
    percent = 100 if state["state"] == verification.DONE else 0
    if total and state["state"] != verification.DONE:
        percent = min(99, math.floor(100 * checked / total))
    finished = state.get("finished_at")
    return {
        "id": run_id,
        "percent": percent,
        **state,
        "finished": datetime.fromisoformat(finished) if finished else None,
    }


@require_POST
@compliance_page("audit_chain")
def chain_verify(request):
    run_id = verification.verification_start(user=request.user)
    _audit(request, resource_type="audit_chain", resource_id=run_id, action="execute")
    if request.htmx:
        return render(
            request, "workspace/compliance/_chain_run.html", {"run": _run_context(run_id)}
        )
    return redirect("workspace:compliance-chain")


@require_GET
@compliance_page("audit_chain")
def chain_run(request, run_id):
    """The progress of a run (polled by the page while it runs): counts only."""
    run = _run_context(run_id)
    if run is None:
        raise Http404
    return render(request, "workspace/compliance/_chain_run.html", {"run": run})


# --- Anomalies -------------------------------------------------------------------------


class AnomalyDayForm(forms.Form):
    day = forms.DateField(required=False, label="Day")


def _finding_links(finding):
    start, end = services.practice_day_bounds(finding.day)
    base = {"staff": finding.user_id}
    if finding.kind == AnomalyFinding.Kind.VOLUME:
        return [
            (
                "Reads that day",
                audit_search_url(**base, action="read", outcome="success", since=start, until=end),
            )
        ]
    if finding.kind == AnomalyFinding.Kind.AFTER_HOURS:
        zone = timezone.get_current_timezone()
        morning = datetime.combine(
            finding.day, datetime.min.time().replace(hour=services.AFTER_HOURS_UNTIL), zone
        )
        evening = datetime.combine(
            finding.day, datetime.min.time().replace(hour=services.AFTER_HOURS_FROM), zone
        )
        return [
            (
                f"Reads before {services.AFTER_HOURS_UNTIL:02d}:00",
                audit_search_url(
                    **base, action="read", outcome="success", since=start, until=morning
                ),
            ),
            (
                f"Reads from {services.AFTER_HOURS_FROM:02d}:00",
                audit_search_url(
                    **base, action="read", outcome="success", since=evening, until=end
                ),
            ),
        ]
    return [
        (
            "Break-glass grants that day",
            audit_search_url(**base, action="break_glass", since=start, until=end),
        )
    ]


@require_GET
@compliance_page("anomaly_report")
def anomalies(request):
    form = AnomalyDayForm(request.GET or None)
    today = services.practice_today()
    day = today - timedelta(days=1)
    error, status = "", 200
    if form.is_bound:
        if not form.is_valid():
            error, status = "Enter the day as a date.", 400
        elif form.cleaned_data["day"]:
            day = form.cleaned_data["day"]
            if day > today:
                error, status = "That day has not begun.", 400
    findings = []
    if status == 200:
        findings = services.anomaly_report(day=day)
        _audit(
            request,
            resource_type="anomaly_report",
            resource_id=day.isoformat(),
            findings=len(findings),
        )
    else:
        _audit(request, resource_type="anomaly_report", outcome="error", http_status=400)
    rows = [
        {"finding": finding, "links": _finding_links(finding), "label": finding.get_kind_display()}
        for finding in findings
    ]
    return render(
        request,
        "workspace/compliance/anomalies.html",
        {"form": form, "day": day, "today": today, "rows": rows, "error": error},
        status=status,
    )


@require_GET
@compliance_page("audit_event")
def desk(request):
    return redirect("workspace:compliance-audit")
