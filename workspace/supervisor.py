"""The supervisor's pages: the team board (live), the KPI dashboard with its
drill-down to the conversations behind each figure, and the escalation rules
and SLA policies with a dry run. Like the agent's pages they parse input, call
the selectors and services the API calls (reporting.selectors.kpi_report, the
rules' serializer and services, channels_app's conversation_assign), audit what
they show, and render."""

import json
import uuid
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.exceptions import PermissionDenied, ValidationError

from channels_app import services
from channels_app.selectors import conversations_visible_to, team_ids_of
from channels_app.serializers import mask_address
from contactcenter import roles, sql
from contactcenter.models import Team
from contactcenter.services import teams_of
from escalation import services as escalation_services
from escalation import supervision
from escalation.models import EscalationRule, SlaPolicy
from escalation.serializers import EscalationRuleSerializer
from patients.models import Channel
from reporting import selectors as reporting
from reporting.renderers import KpiCsvRenderer
from reporting.serializers import KpiQuerySerializer
from reporting.views import _team_scope as kpi_team_scope
from workspace import charts
from workspace.audit import page_audit
from workspace.pages import staff_page

User = get_user_model()

SUPERVISOR = (roles.SUPERVISOR,)
# The KPI report's roles (reporting.views.KpiReportView): admins see every team.
KPI_ROLES = (roles.SUPERVISOR, roles.ADMIN)
# Rules are managed by the admin role, as the API's EscalationRuleListCreateView
# says; supervisors read them and dry-run them against their teams' messages.
RULE_READERS = (roles.SUPERVISOR, roles.ADMIN)
RULE_EDITORS = (roles.ADMIN,)
DRILLDOWN_PAGE_SIZE = 50

FIGURE_WORDS = {
    "opened": "Conversations opened",
    "resolved": "Conversations resolved",
    "fcr": "Resolved at first contact",
    "not_fcr": "Not resolved at first contact",
    "escalated": "Resolved after an escalation",
    "resolved_without_escalation": "Resolved without escalation",
    "reopened": "Reopened before resolution",
    "first_response": "With a first response time",
    "resolution": "With a resolution time",
}


def _figure_value(period, figure):
    """The report's number for a drill-down figure (the API's JSON, same keys)."""
    conversations = period["conversations"]
    if figure == "not_fcr":
        return conversations["resolved"] - conversations["fcr"]
    if figure == "first_response":
        return conversations["first_response_seconds"]["count"]
    if figure == "resolution":
        return conversations["resolution_seconds"]["count"]
    return conversations[figure]


def _notice(request, text, *, status):
    response = render(request, "workspace/_notice.html", {"text": text}, status=status)
    response["HX-Retarget"] = "#notices"
    response["HX-Reswap"] = "innerHTML"
    return response


def _patient_name(conversation):
    patient = conversation.patient
    if patient is None:
        return mask_address(conversation.contact_address) or "Unknown sender"
    return patient.display_name


# --- The team board --------------------------------------------------------------------


def _board_context(request):
    team_ids = team_ids_of(request.user) or []
    members = supervision.team_members_board(team_ids=team_ids)
    breached, watch = supervision.sla_watch(team_ids=team_ids)
    escalations = supervision.escalations_board(user=request.user, team_ids=team_ids)
    # Who each row may be given to: the members of the conversation's team, as
    # <option>s written once per team (a row only picks which one is selected;
    # rendering the same list through the template for every row cost more than
    # the rest of the page).
    by_team = {}
    for member in members:
        label = (
            f"{member['username']} ({member['assigned']}/{member['capacity']}, "
            f"{member['availability']})"
        )
        option = (
            member["id"],
            format_html('<option value="{}">{}</option>', member["id"], label),
            format_html('<option value="{}" selected>{}</option>', member["id"], label),
        )
        for team_id in member["team_ids"]:
            by_team.setdefault(team_id, []).append(option)

    def options(conversation):
        nobody = '<option value="">Nobody</option>'
        return mark_safe(  # noqa: S308 - built by format_html above
            nobody
            + "".join(
                selected if user_id == conversation.assignee_id else plain
                for user_id, plain, selected in by_team.get(conversation.team_id, [])
            )
        )

    rows = []
    for conversation in watch:
        rows.append(
            {
                "conversation": conversation,
                "name": _patient_name(conversation),
                "remaining": conversation.sla_remaining,
                "overdue": conversation.sla_remaining < 0,
                "remaining_text": charts.duration_text(abs(conversation.sla_remaining)),
                "options": options(conversation),
            }
        )
    escalation_rows = [
        {
            "escalation": escalation,
            "conversation": escalation.conversation,
            "name": _patient_name(escalation.conversation),
            "options": options(escalation.conversation),
        }
        for escalation in escalations
    ]
    for member in members:
        member["over_capacity"] = member["assigned"] >= member["capacity"]
    page_audit(
        request,
        resource_type="conversation",
        patient_ids=sorted(
            {str(row["conversation"].patient_id) for row in rows + escalation_rows} - {"None"}
        ),
        rows=len(rows) + len(escalation_rows),
        page="team_board",
    )
    return {
        "members": members,
        "queues": supervision.queue_sizes(team_ids=team_ids),
        "breached": breached,
        "watch": rows,
        "escalations": escalation_rows,
        "now": timezone.now(),
        "reassign_url": reverse("workspace:supervisor-reassign"),
        "teams": list(Team.objects.filter(pk__in=team_ids).order_by("name")),
    }


@require_GET
@staff_page(*SUPERVISOR)
def board(request):
    return render(request, "workspace/supervisor/board.html", _board_context(request))


@require_GET
@staff_page(*SUPERVISOR)
def board_fragment(request):
    return render(request, "workspace/supervisor/_board.html", _board_context(request))


@require_POST
@staff_page(*SUPERVISOR)
def reassign(request):
    """Give a conversation of the supervisor's teams to a member of its team (or
    to nobody), through channels_app's conversation_assign: its live event
    refreshes the new assignee's open inbox and this board."""
    conversation_id = request.POST.get("conversation", "")
    try:
        conversation = (
            conversations_visible_to(request.user)
            .filter(team_id__in=team_ids_of(request.user) or [])
            .select_related("team")
            .filter(pk=conversation_id)
            .first()
        )
    except DjangoValidationError:
        conversation = None
    if conversation is None:
        return _notice(request, "That conversation is not one of your teams'.", status=404)
    audit = {
        "resource_type": "conversation",
        "resource_id": conversation.pk,
        "patient_ids": [conversation.patient_id],
        "action": "update",
    }
    assignee_id = request.POST.get("assignee", "")
    assignee = None
    if assignee_id:
        assignee = (
            User.objects.filter(pk=assignee_id, is_active=True).first()
            if (assignee_id.isdigit())
            else None
        )
        if assignee is None:
            page_audit(request, outcome="error", http_status=400, **audit)
            return _notice(request, "Pick a member of the conversation's team.", status=400)
    try:
        services.conversation_assign(
            conversation=conversation,
            assignee=assignee,
            actor=request.user,
            actor_is_supervisor=True,
        )
    except services.ConversationChangeRefused as refused:
        page_audit(request, outcome="error", http_status=409, **audit)
        return _notice(request, str(refused), status=409)
    page_audit(request, **audit)
    if not request.htmx:
        return redirect("workspace:supervisor-board")
    who = assignee.get_username() if assignee else "nobody"
    context = _board_context(request)
    context["notice"] = f"{_patient_name(conversation)}: assigned to {who}."
    return render(request, "workspace/supervisor/_board.html", context)


# --- KPIs ------------------------------------------------------------------------------


def _kpi_params(request):
    """(validated params, team ids in scope, errors) from the query string, with
    the API's serializer and team rule."""
    query = KpiQuerySerializer(data={k: v for k, v in request.GET.items() if v != ""})
    if not query.is_valid():
        return None, None, {field: [str(e) for e in errs] for field, errs in query.errors.items()}
    params = query.validated_data
    try:
        team_ids = kpi_team_scope(request.user, params.get("team"))
    except PermissionDenied:
        return None, None, {"team": ["You can only report on your own teams."]}
    except ValidationError as exc:
        return None, None, {"team": [str(m) for m in exc.detail.get("team", ["No such team."])]}
    return params, team_ids, {}


def _team_choices(user):
    if roles.has_role(user, roles.ADMIN):
        return list(Team.objects.order_by("name"))
    return list(teams_of(user).order_by("name"))


def _query_string(params, **extra):
    values = {
        "since": params["since"].isoformat(),
        "until": params["until"].isoformat(),
        "interval": params["interval"],
    }
    if params.get("team"):
        values["team"] = params["team"]
    if params.get("channel"):
        values["channel"] = params["channel"]
    values.update(extra)
    return urlencode(values)


def _percent(value):
    return None if value is None else round(value * 100, 1)


def _kpi_charts(report):
    intervals = report["intervals"]
    week = report["interval"] == "week"
    categories = [
        (f"w/c {item['start']:%d %b}" if week else f"{item['start']:%a %d %b}")
        for item in intervals
    ]
    per = "week" if week else "day"
    conversations = [item["conversations"] for item in intervals]
    calls = [item["calls"] for item in intervals]
    period = report["period"]["conversations"]
    samples = report.get("samples", {})
    return [
        charts.bar_chart(
            title=f"Conversations opened and resolved per {per}",
            desc=(
                f"{period['opened']} opened and {period['resolved']} resolved over the period, "
                f"per {per}."
            ),
            categories=categories,
            series=[
                ("Opened", [c["opened"] for c in conversations]),
                ("Resolved", [c["resolved"] for c in conversations]),
            ],
        ),
        charts.bar_chart(
            title=f"First-contact resolution, escalation and reopen rates per {per} (%)",
            desc="Shares of the resolved conversations; a period without resolutions has none.",
            categories=categories,
            series=[
                ("First contact", [_percent(c["fcr_rate"]) for c in conversations]),
                ("Escalated", [_percent(c["escalation_rate"]) for c in conversations]),
                ("Reopened", [_percent(c["reopen_rate"]) for c in conversations]),
            ],
        ),
        charts.bar_chart(
            title=f"Median first response and resolution time per {per} (business time)",
            desc="Medians over the resolved conversations, in the teams' business hours.",
            categories=categories,
            series=[
                ("First response", [c["first_response_seconds"]["median"] for c in conversations]),
                ("Resolution", [c["resolution_seconds"]["median"] for c in conversations]),
            ],
            value_label=charts.duration_text,
            durations=True,
        ),
        charts.bar_chart(
            title=f"Calls offered, answered and abandoned per {per}",
            desc="Inbound calls that entered a queue, minus short abandons.",
            categories=categories,
            series=[
                ("Offered", [c["offered"] for c in calls]),
                ("Answered", [c["answered"] for c in calls]),
                ("Abandoned", [c["abandoned"] for c in calls]),
            ],
        ),
        _duration_histogram(
            "first response", period["first_response_seconds"], samples.get("first_response", [])
        ),
        _duration_histogram(
            "resolution", period["resolution_seconds"], samples.get("resolution", [])
        ),
    ]


def _duration_histogram(what, summary, samples):
    """A distribution of business-time durations with its median and p90 marked."""
    return charts.histogram(
        title=f"Distribution of {what} times (business time)",
        desc=(
            f"{summary['count']} conversations; median "
            f"{charts.duration_text(summary['median'])}, p90 "
            f"{charts.duration_text(summary['p90'])}."
        ),
        samples=samples,
        marks=[("Median", summary["median"]), ("p90", summary["p90"])],
    )


def _figure_rows(report, params):
    period = report["period"]["conversations"]
    rows = []
    for figure, label in FIGURE_WORDS.items():
        rows.append(
            {
                "figure": figure,
                "label": label,
                "value": _figure_value(report["period"], figure),
                "query": _query_string(params, figure=figure),
            }
        )
    rates = {
        "fcr_rate": period["fcr_rate"],
        "escalation_rate": period["escalation_rate"],
        "reopen_rate": period["reopen_rate"],
    }
    return rows, rates


@require_GET
@staff_page(*KPI_ROLES)
def kpis(request):
    params, team_ids, errors = _kpi_params(request)
    context = {
        "errors": errors,
        "teams": _team_choices(request.user),
        "channels": Channel.choices,
        "values": request.GET,
    }
    if errors:
        return render(request, "workspace/supervisor/kpis.html", context, status=400)
    report = reporting.kpi_report(
        since=params["since"],
        until=params["until"],
        team_ids=team_ids,
        channel=params.get("channel"),
        interval=params["interval"],
        samples=True,
    )
    figures, rates = _figure_rows(report, params)
    context.update(
        report=report,
        params=params,
        charts=_kpi_charts(report),
        figures=figures,
        rates={key: _percent(value) for key, value in rates.items()},
        period=report["period"],
        csv_query=_query_string(params),
    )
    return render(request, "workspace/supervisor/kpis.html", context)


@require_GET
@staff_page(*KPI_ROLES)
def kpis_csv(request):
    """The same report as the API's ?format=csv (its renderer)."""
    params, team_ids, errors = _kpi_params(request)
    if errors:
        return HttpResponse(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    report = reporting.kpi_report(
        since=params["since"],
        until=params["until"],
        team_ids=team_ids,
        channel=params.get("channel"),
        interval=params["interval"],
    )
    response = HttpResponse(KpiCsvRenderer().render(report), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="kpis-{params["since"]}-{params["until"]}.csv"'
    )
    return response


def _drill_order(figure):
    return "created_at" if figure == reporting.OPENED_FIGURE else "resolved_at"


@require_GET
@staff_page(*KPI_ROLES)
def drilldown(request):
    """The conversations behind one figure of the report: the ids come from
    reporting.selectors.kpi_conversations, whose filters are the ones the count
    uses. The list obeys team access (the rule's team half, as the inbox) and is
    audited naming every patient on the page; keyset pages, newest first."""
    params, team_ids, errors = _kpi_params(request)
    figure = request.GET.get("figure", "")
    if not errors and figure not in reporting.DRILLDOWN_FIGURES:
        errors = {"figure": [f"Pick one of: {', '.join(reporting.DRILLDOWN_FIGURES)}."]}
    if errors:
        return render(
            request,
            "workspace/supervisor/drilldown.html",
            {"errors": errors},
            status=400,
        )
    counted = reporting.kpi_conversations(
        figure=figure,
        since=params["since"],
        until=params["until"],
        team_ids=team_ids,
        channel=params.get("channel"),
    )
    report = reporting.kpi_report(
        since=params["since"],
        until=params["until"],
        team_ids=team_ids,
        channel=params.get("channel"),
        interval=params["interval"],
    )
    order = _drill_order(figure)
    # The access rule's team half (compliance.access.team_ids_of), as the inbox
    # lists: a conversation is granted to exactly its team. A supervisor's report
    # covers only their own teams, so they see every conversation counted; an
    # admin's covers every team and they see none of them.
    own_teams = set(team_ids_of(request.user) or [])
    visible = counted.filter(team_id__in=own_teams)
    page = visible.select_related("patient", "team", "assignee").order_by(f"-{order}", "-id")
    after = request.GET.get("after", "")
    if after:
        at_text, _, after_text = after.partition("_")
        try:
            at = parse_datetime(at_text)
            after_id = uuid.UUID(after_text)
        except ValueError:
            at = None
        if at is None:
            return render(
                request,
                "workspace/supervisor/drilldown.html",
                {"errors": {"after": ["That page link is not valid."]}},
                status=400,
            )
        page = page.filter(Q(**{f"{order}__lt": at}) | Q(**{order: at, "id__lt": after_id}))
    with sql.analytic_statements():
        total = counted.count()
        covered = team_ids is not None and set(team_ids) <= own_teams
        visible_total = total if covered else visible.count()
        conversations = list(page[: DRILLDOWN_PAGE_SIZE + 1])
    more = len(conversations) > DRILLDOWN_PAGE_SIZE
    conversations = conversations[:DRILLDOWN_PAGE_SIZE]
    next_after = ""
    if more:
        last = conversations[-1]
        stamp = getattr(last, order)
        next_after = f"{stamp.isoformat()}_{last.pk}"
    rows = [
        {"conversation": c, "name": _patient_name(c), "at": getattr(c, order)}
        for c in conversations
    ]
    page_audit(
        request,
        resource_type="conversation",
        patient_ids=[str(c.patient_id) for c in conversations if c.patient_id],
        rows=len(rows),
        page="kpi_drilldown",
        figure=figure,
    )
    rolled = reporting.kpi_rolled_up_days(since=params["since"], until=params["until"])
    return render(
        request,
        "workspace/supervisor/drilldown.html",
        {
            "params": params,
            "figure": figure,
            "figure_label": FIGURE_WORDS[figure],
            "reported": _figure_value(report["period"], figure),
            "total": total,
            "visible_total": visible_total,
            "hidden": total - visible_total,
            "rows": rows,
            "order": order,
            "next_query": _query_string(params, figure=figure, after=next_after)
            if next_after
            else "",
            "back_query": _query_string(params),
            "rolled_days": len(rolled),
        },
    )


# --- Escalation rules and SLA policies -------------------------------------------------


def _config_audit(request, *, resource_type, resource_id="", **kwargs):
    # Configuration concerns no patient; audited as the API's ConfigurationAuditMixin.
    page_audit(
        request,
        resource_type=resource_type,
        resource_id=resource_id,
        purpose_of_use="HSYSADMIN",
        **kwargs,
    )


@require_GET
@staff_page(*RULE_READERS)
def rules(request):
    _config_audit(request, resource_type="escalation_rule")
    return render(
        request,
        "workspace/supervisor/rules.html",
        {
            "rules": list(EscalationRule.objects.order_by("order", "id")),
            "policies": list(SlaPolicy.objects.order_by("-priority")),
            "can_edit": roles.has_role(request.user, *RULE_EDITORS),
        },
    )


def _json_field(text, name, errors):
    try:
        return json.loads(text) if text.strip() else ({} if name == "actions" else None)
    except ValueError as exc:
        errors[name] = [f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
        return None


@require_http_methods(["GET", "POST"])
@staff_page(*RULE_EDITORS)
def rule_edit(request, rule_id=None):
    """Create or change a rule through the API's serializer and services
    (escalation.services.rule_create / rule_update, which run the model's
    validation): the page refuses what the API refuses, with the same words."""
    rule = EscalationRule.objects.filter(pk=rule_id).first() if rule_id else None
    if rule_id and rule is None:
        return render(request, "workspace/not_found.html", status=404)
    errors = {}
    if request.method == "GET":
        values = {
            "name": rule.name if rule else "",
            "order": rule.order if rule else 100,
            "active": rule.active if rule else True,
            "conditions": json.dumps(rule.conditions if rule else {"phrases": []}, indent=2),
            "actions": json.dumps(rule.actions if rule else {}, indent=2),
        }
        return render(
            request,
            "workspace/supervisor/rule_form.html",
            {"rule": rule, "values": values, "errors": errors},
        )
    values = {
        "name": request.POST.get("name", ""),
        "order": request.POST.get("order", ""),
        "active": request.POST.get("active") == "on",
        "conditions": request.POST.get("conditions", ""),
        "actions": request.POST.get("actions", ""),
    }
    data = {"name": values["name"], "order": values["order"], "active": values["active"]}
    data["conditions"] = _json_field(values["conditions"], "conditions", errors)
    data["actions"] = _json_field(values["actions"], "actions", errors)
    saved = None
    if not errors:
        serializer = EscalationRuleSerializer(rule, data=data)
        if not serializer.is_valid():
            errors = {k: [str(m) for m in v] for k, v in serializer.errors.items()}
        else:
            try:
                if rule is None:
                    saved = escalation_services.rule_create(**serializer.validated_data)
                else:
                    saved = escalation_services.rule_update(
                        rule=rule, changes=serializer.validated_data
                    )
            except DjangoValidationError as exc:
                errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    if errors:
        _config_audit(
            request,
            resource_type="escalation_rule",
            resource_id=rule.pk if rule else "",
            action="create" if rule is None else "update",
            outcome="error",
            http_status=400,
        )
        return render(
            request,
            "workspace/supervisor/rule_form.html",
            {"rule": rule, "values": values, "errors": errors},
            status=400,
        )
    _config_audit(
        request,
        resource_type="escalation_rule",
        resource_id=saved.pk,
        action="create" if rule is None else "update",
    )
    return redirect(f"{reverse('workspace:supervisor-rules')}?saved={saved.pk}")


@require_http_methods(["GET", "POST"])
@staff_page(*RULE_EDITORS)
def sla_policy_edit(request, policy_id):
    policy = SlaPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        return render(request, "workspace/not_found.html", status=404)
    fields = escalation_services.SLA_POLICY_FIELDS
    errors = {}
    values = {name: getattr(policy, name) for name in fields}
    if request.method == "POST":
        changes = {}
        for name in fields:
            text = request.POST.get(name, "").strip()
            values[name] = text
            try:
                changes[name] = int(text)
            except ValueError:
                errors[name] = ["Enter a whole number of business minutes."]
        if not errors:
            try:
                escalation_services.sla_policy_update(policy=policy, changes=changes)
            except DjangoValidationError as exc:
                errors = exc.message_dict
        _config_audit(
            request,
            resource_type="sla_policy",
            resource_id=policy.pk,
            action="update",
            outcome="error" if errors else "success",
            http_status=400 if errors else 302,
        )
        if not errors:
            return redirect(f"{reverse('workspace:supervisor-rules')}?saved_policy={policy.pk}")
    return render(
        request,
        "workspace/supervisor/sla_form.html",
        {"policy": policy, "values": values, "errors": errors, "fields": fields},
        status=400 if errors else 200,
    )


@require_GET
@staff_page(*RULE_READERS)
def dry_run(request):
    """Which of last week's messages of the caller's teams the active rules (or
    one rule, active or not) would have escalated, and why. Nothing is written
    but the audit row, which names every patient listed."""
    rule_id = request.GET.get("rule", "")
    chosen = EscalationRule.objects.filter(pk=rule_id).first() if rule_id.isdigit() else None
    if rule_id and chosen is None:
        return render(request, "workspace/not_found.html", status=404)
    tested = [chosen] if chosen else list(EscalationRule.objects.filter(active=True))
    result = supervision.rules_dry_run(user=request.user, rules=tested)
    rows = [
        {"hit": hit, "conversation": hit.conversation, "name": _patient_name(hit.conversation)}
        for hit in result.hits
    ]
    page_audit(
        request,
        resource_type="escalation_dry_run",
        patient_ids=sorted(
            {str(hit.conversation.patient_id) for hit in result.hits if hit.conversation.patient_id}
        ),
        rows=len(rows),
    )
    return render(
        request,
        "workspace/supervisor/dry_run.html",
        {
            "result": result,
            "rows": rows,
            "rules": tested,
            "chosen": chosen,
            "per_rule": [(rule, result.per_rule.get(rule.pk)) for rule in tested],
            "conversations": len({hit.conversation.pk for hit in result.hits}),
        },
    )
