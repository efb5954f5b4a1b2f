"""The agent's pages: sign-in, the inbox, a conversation with its patient, and
the actions on it. Views parse input, call the selectors and services the API
calls, audit what they show, and render."""

import base64
import json
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import login, logout
from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_otp import login as otp_login

from channels_app import live, selectors, services
from channels_app.models import Conversation, Interaction
from channels_app.recordings import RecordingUnavailable, recording_open
from channels_app.serializers import ReplySerializer, inbox_row
from compliance import services as compliance_services
from compliance.access import team_ids_of
from contactcenter import idempotency, roles, signin
from contactcenter.keyset import Cursor, InvalidCursor, PageRequest
from escalation import services as escalation_services
from escalation.selectors import business_calendar_for, open_escalation_reasons
from patients.models import Appointment, Channel
from patients.selectors import patient_get_visible, patients_visible_to
from patients.services import consent_check
from workspace import forms
from workspace.audit import page_audit
from workspace.pages import CARE_ROLES, not_found, staff_page

INBOX_PAGE_SIZE = 50
CHANNEL_WORDS = {
    Channel.SMS: "SMS",
    Channel.EMAIL: "email",
    Channel.VOICE: "phone",
    Channel.PORTAL: "the patient portal",
}
THREAD_PAGE_SIZE = 50


# --- Sign-in -----------------------------------------------------------------------


def _safe_next(request, default="/inbox/"):
    target = request.POST.get("next") or request.GET.get("next") or default
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def signin_page(request):
    if request.user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request))
    form = forms.SignInForm(request.POST or None)
    error, status = None, 200
    if request.method == "POST" and form.is_valid():
        try:
            user, device = signin.staff_sign_in_check(
                request=request,
                sender=signin_page,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                otp=form.cleaned_data["otp"],
            )
        except signin.SignInRefused as refused:
            error, status = str(refused), refused.http_status
        else:
            login(request, user)
            if device is not None:
                otp_login(request, device)
            signin.record_sign_in(request=request, sender=signin_page, user=user, http_status=302)
            return redirect(_safe_next(request))
    elif request.method == "POST":
        status = 400
    return render(
        request,
        "workspace/signin.html",
        {
            "form": form,
            "error": error,
            "next": _safe_next(request),
            "mfa_required": settings.MFA_REQUIRED,
            "session_expired": getattr(request, "session_expired", False)
            or "expired" in request.GET,
        },
        status=status,
    )


@require_POST
def signout(request):
    logout(request)
    return redirect("workspace:signin")


@require_POST
@staff_page()
def availability(request):
    """The top bar's availability switch (routing reads it)."""
    choice = request.POST.get("availability", "")
    try:
        escalation_services.staff_availability_set(user=request.user, availability=choice)
    except ValueError:
        return _notice(request, "Pick available, busy or away.", status=400)
    if not request.htmx:
        return redirect(_safe_next(request, default=request.headers.get("Referer") or "/inbox/"))
    return render(request, "workspace/_availability.html", {"availability": choice})


def home(request):
    if roles.has_role(request.user, roles.COMPLIANCE):
        return redirect("workspace:compliance")
    return redirect("workspace:inbox")


# --- The inbox ---------------------------------------------------------------------


def _inbox_query(request):
    """(validated form, selectors.InboxFilters) from the query string."""
    form = forms.InboxForm(request.GET or None, auto_id="f-%s")
    form.is_valid()
    return form, form.filters()


def _page_request(request, size):
    text = request.GET.get("cursor")
    try:
        return PageRequest(cursor=Cursor.decode(text) if text else None, size=size)
    except InvalidCursor:
        return PageRequest(cursor=None, size=size)


def _escalation_reasons(rows):
    """The newest open escalation's reason of each escalated row. Only rows with
    the flag are asked for: the escalation services keep it (set with an
    escalation, cleared when the last one is acknowledged) and a row shows a
    reason only beside it, so a page with none escalated reads nothing."""
    return open_escalation_reasons(conversation_ids=[row["id"] for row in rows if row["escalated"]])


def _open_escalations(conversation):
    """The conversation's unacknowledged escalations, read only when its flag says
    it has some (see _escalation_reasons)."""
    if not conversation.escalated:
        return []
    return open_escalation_reasons(conversation_ids=[conversation.pk], full=True).get(
        conversation.pk, []
    )


def _business_countdowns(rows, now):
    """Remaining business time to each row's SLA due time, in its team's calendar
    (one read per team on the page, never per row)."""
    calendars = {}
    for row in rows:
        due = row["sla_due_at"]
        if due is None:
            row["sla_remaining"] = None
            continue
        team_id = row["team_id"]
        if team_id not in calendars:
            calendars[team_id] = business_calendar_for(team_id=team_id)
        calendar = calendars[team_id]
        if due <= now:
            row["sla_remaining"] = -(now - due).total_seconds()
        elif calendar is None:
            row["sla_remaining"] = (due - now).total_seconds()
        else:
            row["sla_remaining"] = calendar.business_time_between(now, due).total_seconds()


def inbox_rows_context(request, *, filters, page_request):
    """The rows of one inbox page as the templates show them, with their audit
    row written (naming every patient on the page)."""
    page = selectors.inbox_page(user=request.user, filters=filters, page=page_request)
    reasons = _escalation_reasons(page.rows)
    now = timezone.now()
    _business_countdowns(page.rows, now)
    rows = []
    for raw in page.rows:
        row = inbox_row(raw)
        row.update(
            last_interaction=raw["last_interaction_at"],
            sla_due=raw["sla_due_at"],
            sla_remaining=raw["sla_remaining"],
            priority_value=raw["priority"],
            escalation_reason=reasons.get(raw["id"]),
        )
        rows.append(row)
    page_audit(
        request,
        resource_type="conversation",
        patient_ids=[row["patient_id"] for row in page.rows],
        rows=len(rows),
    )
    return {"rows": rows, "next_cursor": page.next.encode() if page.next else None}


@require_GET
@staff_page(*CARE_ROLES)
def inbox(request):
    form, filters = _inbox_query(request)
    context = {
        "form": form,
        "query": form.query_string(),
        "tab_query": form.query_string(exclude=("tab",)),
        "tab": form.current_tab(),
        "counts": selectors.inbox_counts(user=request.user),
        **inbox_rows_context(
            request, filters=filters, page_request=_page_request(request, INBOX_PAGE_SIZE)
        ),
    }
    return render(request, "workspace/inbox.html", context)


@require_GET
@staff_page(*CARE_ROLES)
def inbox_rows(request):
    form, filters = _inbox_query(request)
    context = {
        "query": form.query_string(),
        "selected": request.GET.get("selected", ""),
        **inbox_rows_context(
            request, filters=filters, page_request=_page_request(request, INBOX_PAGE_SIZE)
        ),
    }
    return render(request, "workspace/_inbox_rows.html", context)


@require_GET
@staff_page(*CARE_ROLES)
def inbox_counts(request):
    form, _filters = _inbox_query(request)
    page_audit(request, resource_type="inbox_counts")
    return render(
        request,
        "workspace/_tabs.html",
        {
            "counts": selectors.inbox_counts(user=request.user),
            "tab": form.current_tab(),
            "tab_query": form.query_string(exclude=("tab",)),
        },
    )


# --- A conversation ----------------------------------------------------------------


def _visible_conversation(request, conversation_id, *, contacts=False):
    """The conversation when the caller may see it; otherwise None, with the
    refused look audited against its patient by the 404 page. The read is the
    API's (the selector joins the patient); with contacts=True the patient's
    contact points come with it, for the views whose panel and consent check
    both read them."""
    if not contacts:
        return selectors.conversation_get_visible(
            user=request.user, conversation_id=conversation_id
        )
    return (
        selectors.conversations_visible_to(request.user)
        .select_related("patient", "assignee", "team", "account")
        .prefetch_related("patient__contact_points")
        .filter(pk=conversation_id)
        .first()
    )


def _denied(request, conversation_id):
    patient_ids = (
        Conversation.objects.filter(pk=conversation_id)
        .exclude(patient=None)
        .values_list("patient_id", flat=True)
    )
    return not_found(
        request,
        resource_type="conversation",
        resource_id=conversation_id,
        patient_ids=list(patient_ids),
    )


def thread_context(conversation, *, page_request):
    page = selectors.conversation_messages_page(conversation=conversation, page=page_request)
    messages = list(reversed(page.rows))
    _with_details(messages)
    last_inbound = next(
        (m for m in reversed(messages) if m["direction"] == Interaction.Direction.INBOUND), None
    )
    return {
        "messages": messages,
        "earlier_cursor": page.next.encode() if page.next else None,
        "last_seen": str(messages[-1]["id"]) if messages else "",
        "last_inbound": last_inbound,
        "after_cursor": _after_cursor(messages[-1]) if messages else "",
    }


def _after_cursor(message):
    """The cursor of the messages after this one (a backwards keyset cursor, as the
    API's `previous` link): what the live refresh asks for."""
    return Cursor(key=(message["occurred_at"], message["id"]), backwards=True).encode()


def _with_details(messages):
    """Each message dict gets its email, attachment and call details (one query
    per kind on the page)."""
    details = selectors.interaction_details(rows=messages)
    for m in messages:
        m["details"] = details.get(m["id"])
    return messages


def _reply_target(conversation):
    """What the composer says it replies to, and why it may refuse."""
    decision = consent_check(
        patient=conversation.patient,
        channel=conversation.channel,
        address=conversation.contact_address or None,
    )
    return {
        "channel": conversation.channel,
        "channel_label": CHANNEL_WORDS.get(conversation.channel, conversation.channel),
        "address": conversation.contact_address,
        "allowed": decision.allowed,
        "refusal": _refusal_text(decision.reason, conversation) if not decision.allowed else "",
    }


def _refusal_text(reason, conversation):
    if reason == "opted_out":
        return (
            "Not sent: this number replied STOP and has opted out of texts. "
            "Call the patient or use email."
        )
    if reason == "patient_inactive":
        return "Not sent: this patient's record is inactive or was merged into another."
    if reason == "no_contact_point":
        return f"Not sent: the patient has no {conversation.get_channel_display()} address."
    return "Not sent: this address cannot receive messages."


def _visible_patient(request, conversation, *, panel=True):
    """The conversation's patient when the caller may see it; with panel=False
    only the patient row (a thread refresh shows the name, not the contacts).

    A patient of one of the caller's teams is the one the conversation's read
    loaded: compliance.access.team_ids_of is the rule's team half (its grants
    follow the team), the form the inbox already applies, so it needs no read of
    its own. Any other patient (a break-glass grant, or none) goes through the
    whole rule, patients_visible_to."""
    if conversation.patient_id is None:
        return None
    if conversation.patient.team_id in (team_ids_of(request.user) or ()):
        return conversation.patient
    if not panel:
        return patients_visible_to(request.user).filter(pk=conversation.patient_id).first()
    return patient_get_visible(user=request.user, patient_id=conversation.patient_id)


def _patient_panel(request, conversation):
    patient = _visible_patient(request, conversation)
    if patient is None:
        if conversation.patient_id is not None:
            return {"patient": None}
        from workspace.patient_panel import sender_matches

        return {"patient": None, "matches": sender_matches(request.user, conversation)}
    appointments = list(
        Appointment.objects.filter(patient=patient, starts_at__gte=timezone.now())
        .order_by("starts_at")
        .prefetch_related("reminders")[:5]
    )
    others = list(
        selectors.conversations_visible_to(request.user)
        .filter(patient=patient, status__in=list(Conversation.ACTIVE_STATUSES))
        .exclude(pk=conversation.pk)
        .order_by("-last_interaction_at")[:5]
    )
    return {
        "patient": patient,
        "contacts": list(patient.contact_points.all()),
        "appointments": appointments,
        "other_conversations": others,
    }


def panel_patient_ids(context):
    """The patients an unknown sender's panel names (its possible matches)."""
    return [p.pk for p in context.get("matches", ())]


def conversation_context(request, conversation):
    return {
        "conversation": conversation,
        "reply": _reply_target(conversation),
        "idempotency_key": uuid.uuid4().hex,
        "escalations": _open_escalations(conversation),
        "teammates": selectors.teammates_of(conversation=conversation),
        "callback": selectors.callback_pending_of(conversation_id=conversation.pk),
        "priorities": Conversation.Priority.choices,
        **thread_context(
            conversation, page_request=PageRequest(cursor=None, size=THREAD_PAGE_SIZE)
        ),
        **_patient_panel(request, conversation),
    }


@require_GET
@staff_page(*CARE_ROLES)
def conversation(request, conversation_id):
    found = _visible_conversation(request, conversation_id, contacts=True)
    if found is None:
        return _denied(request, conversation_id)
    context = conversation_context(request, found)
    page_audit(
        request,
        resource_type="conversation",
        resource_id=found.pk,
        patient_ids=[found.patient_id, *panel_patient_ids(context)],
    )
    services.conversation_mark_read(conversation=found, user=request.user)
    if request.htmx and request.htmx.target == "work":
        return render(request, "workspace/_work.html", context)
    form, filters = _inbox_query(request)
    context.update(
        form=form,
        query=form.query_string(),
        tab_query=form.query_string(exclude=("tab",)),
        tab=form.current_tab(),
        counts=selectors.inbox_counts(user=request.user),
        selected=str(found.pk),
        **inbox_rows_context(
            request, filters=filters, page_request=PageRequest(cursor=None, size=INBOX_PAGE_SIZE)
        ),
    )
    return render(request, "workspace/conversation.html", context)


@require_GET
@staff_page(*CARE_ROLES)
def conversation_thread(request, conversation_id):
    found = _visible_conversation(request, conversation_id)
    if found is None:
        return _denied(request, conversation_id)
    if "after" in request.GET or "message" in request.GET:
        return _thread_update(request, found)
    page_request = _page_request(request, THREAD_PAGE_SIZE)
    context = {
        "conversation": found,
        "patient": _visible_patient(request, found, panel=False),
        "escalations": _open_escalations(found),
        **thread_context(found, page_request=page_request),
    }
    page_audit(
        request, resource_type="interaction", resource_id=found.pk, patient_ids=[found.patient_id]
    )
    if page_request.cursor is not None:
        return render(request, "workspace/_thread_earlier.html", context)
    services.conversation_mark_read(conversation=found, user=request.user)
    return render(request, "workspace/_thread.html", context)


def _thread_update(request, conversation):
    """The live refresh of an open thread, at the cost of what changed, not of the
    thread: `?after=<cursor>` answers only the messages after the last one shown
    (keyset, through the conversation's (occurred_at, id) index) and tells the page
    its new last message in an HX-Trigger; `?message=<id>` answers one message
    again (its delivery state moved). 204 when nothing is new; more than a page
    of new messages asks the page to reload the thread."""
    audit = {
        "resource_type": "interaction",
        "resource_id": conversation.pk,
        "patient_ids": [conversation.patient_id],
    }
    if "message" in request.GET:
        try:
            wanted = uuid.UUID(request.GET["message"])
        except ValueError:
            return HttpResponse("Not a message id.", status=400)
        found = selectors.interaction_in_thread(conversation=conversation, interaction_id=wanted)
        if found is None:
            return HttpResponse(status=204)
        page_audit(request, **audit)
        return render(request, "workspace/_thread_new.html", {"messages": _with_details([found])})
    try:
        cursor = Cursor.decode(request.GET["after"])
    except InvalidCursor:
        return HttpResponse("Not a thread cursor.", status=400)
    if not cursor.backwards:
        return HttpResponse("Not a thread cursor.", status=400)
    page = selectors.conversation_messages_page(
        conversation=conversation, page=PageRequest(cursor=cursor, size=THREAD_PAGE_SIZE)
    )
    if page.previous is not None:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = "live-thread"
        return response
    if not page.rows:
        return HttpResponse(status=204)
    messages = _with_details(list(reversed(page.rows)))
    page_audit(request, **audit)
    services.conversation_mark_read(conversation=conversation, user=request.user)
    last_inbound = next(
        (m for m in reversed(messages) if m["direction"] == Interaction.Direction.INBOUND), None
    )
    response = render(request, "workspace/_thread_new.html", {"messages": messages})
    response["HX-Trigger-After-Settle"] = json.dumps(
        {
            "thread-advanced": {
                "after": _after_cursor(messages[-1]),
                "lastSeen": str(messages[-1]["id"]),
                "lastInbound": str(last_inbound["id"]) if last_inbound else "",
            }
        }
    )
    return response


def _composer_response(request, conversation, *, status, error="", draft="", note=False, **extra):
    context = {
        "conversation": conversation,
        "reply": _reply_target(conversation),
        "idempotency_key": uuid.uuid4().hex if not draft else request.POST.get("idempotency_key"),
        "error": error,
        "draft": draft,
        "note": note,
        **extra,
    }
    return render(request, "workspace/_composer_response.html", context, status=status)


@require_POST
@staff_page(*CARE_ROLES)
def reply(request, conversation_id):
    found = _visible_conversation(request, conversation_id, contacts=True)
    if found is None:
        return _denied(request, conversation_id)
    internal = request.POST.get("mode") == "note"
    body = request.POST.get("body", "")
    data = ReplySerializer(
        data={
            "body": body,
            "internal": internal,
            **(
                {"last_seen_interaction": request.POST["last_seen"]}
                if request.POST.get("last_seen")
                else {}
            ),
        }
    )
    audit = {
        "resource_type": "interaction",
        "resource_id": found.pk,
        "patient_ids": [found.patient_id],
        "action": "create",
    }
    if not body.strip():
        page_audit(request, outcome="error", http_status=400, **audit)
        return _composer_response(
            request,
            found,
            status=400,
            error="Write a message before sending." if not internal else "Write the note first.",
            note=internal,
        )
    if not data.is_valid():
        page_audit(request, outcome="error", http_status=400, **audit)
        errors = data.errors.get("body") or data.errors.get("last_seen_interaction") or ["Invalid."]
        return _composer_response(
            request,
            found,
            status=400,
            error=_body_error(errors[0], body),
            draft=body,
            note=internal,
        )
    if not internal:
        target = _reply_target(found)
        if not target["allowed"]:
            page_audit(request, outcome="error", http_status=409, **audit)
            return _composer_response(
                request, found, status=409, error=target["refusal"], draft=body
            )
    key = (request.POST.get("idempotency_key") or "").strip()
    if key and not idempotency.key_is_valid(key):
        page_audit(request, outcome="error", http_status=400, **audit)
        return _composer_response(
            request,
            found,
            status=400,
            error="This form is out of date: reload the page.",
            draft=body,
        )
    replayed = False
    try:
        with transaction.atomic():
            claimed, previous = (
                idempotency.idempotency_claim(
                    principal=idempotency.staff_principal(request.user),
                    key=key,
                    fingerprint=idempotency.request_fingerprint(request),
                )
                if key
                else (None, None)
            )
            if previous is not None:
                # The same send again (a double click, a retried request): answer
                # with the first one's result and send nothing new.
                interaction_id = json.loads(previous.response_body)["interaction"]
                replayed = True
            else:
                interaction, _created = services.reply_create(
                    conversation=found,
                    author=request.user,
                    body=data.validated_data["body"],
                    internal=internal,
                    last_seen_interaction_id=data.validated_data.get("last_seen_interaction"),
                )
                interaction_id = str(interaction.pk)
                if claimed is not None:
                    idempotency.idempotency_complete(
                        claimed,
                        status_code=200,
                        body={"interaction": interaction_id},
                        patient_ids=[found.patient_id],
                    )
    except idempotency.IdempotencyKeyReused:
        page_audit(request, outcome="error", http_status=422, **audit)
        return _composer_response(
            request,
            found,
            status=422,
            error="This form was already used to send another message: reload the page.",
            draft=body,
        )
    except services.ReplyStale as stale:
        page_audit(request, outcome="error", http_status=409, **audit)
        return _composer_response(
            request,
            found,
            status=409,
            error=str(stale),
            draft=body,
            stale=True,
            highlight=str(stale.latest_interaction_id),
            patient=_visible_patient(request, found, panel=False),
            **thread_context(found, page_request=PageRequest(cursor=None, size=THREAD_PAGE_SIZE)),
        )
    audit["resource_id"] = interaction_id
    page_audit(request, **audit, **({"idempotent_replay": True} if replayed else {}))
    context = thread_context(found, page_request=PageRequest(cursor=None, size=THREAD_PAGE_SIZE))
    return _composer_response(
        request,
        found,
        status=200,
        sent=True,
        note=internal,
        patient=_visible_patient(request, found, panel=False),
        **context,
    )


@require_GET
@staff_page(*CARE_ROLES)
def composer_suggestions(request, conversation_id):
    """The composer's canned responses, filled in for this patient: the three that
    best fit the patient's latest message (understanding's reply suggestions,
    each with why) and the team's whole list. The intent behind them is PHI like
    the message: the read is audited."""
    from understanding.selectors import reply_suggestions

    found = _visible_conversation(request, conversation_id)
    if found is None:
        return _denied(request, conversation_id)
    page_audit(
        request, resource_type="conversation", resource_id=found.pk, patient_ids=[found.patient_id]
    )
    decision, suggestions = reply_suggestions(conversation=found)

    def filled(canned):
        try:
            return selectors.canned_response_text(canned=canned, conversation=found)
        except ValueError:
            return None

    best = [
        {"canned": s.canned_response, "text": filled(s.canned_response), "why": s.why}
        for s in suggestions
    ]
    everything = [
        {"canned": canned, "text": filled(canned)}
        for canned in selectors.canned_responses_of(conversation=found)
    ]
    return render(
        request,
        "workspace/_suggestions.html",
        {
            "conversation": found,
            "intent": decision,
            "suggestions": [s for s in best if s["text"]],
            "canned": [c for c in everything if c["text"]],
        },
    )


def _body_error(message, body):
    if len(body) > 1600:
        return (
            f"Too long to send: {len(body)} characters, at most 1600 (10 text messages). "
            "Shorten it or split it in two."
        )
    return str(message)


@require_POST
@staff_page(*CARE_ROLES)
def act(request, conversation_id):
    found = _visible_conversation(request, conversation_id)
    if found is None:
        return _denied(request, conversation_id)
    form = forms.ActionForm(request.POST, teammates=selectors.teammates_of(conversation=found))
    audit = {
        "resource_type": "conversation",
        "resource_id": found.pk,
        "patient_ids": [found.patient_id],
        "action": "update",
    }
    if not form.is_valid():
        page_audit(request, outcome="error", http_status=400, **audit)
        return _notice(request, form.first_error(), status=400)
    action = form.cleaned_data["action"]
    try:
        if action in ("escalate", "acknowledge"):
            _escalation_action(request, found, form.cleaned_data)
        elif action == "call_back":
            _call_back(request, found, form.cleaned_data["agent_number"])
        else:
            services.conversation_change(
                conversation=found,
                actor=request.user,
                actor_is_supervisor=roles.has_role(request.user, roles.SUPERVISOR),
                changes=form.changes(user=request.user),
            )
    except (
        services.ConversationChangeRefused,
        services.CallbackRefused,
        escalation_services.EscalationRefused,
    ) as refused:
        page_audit(request, outcome="error", http_status=409, **audit)
        return _notice(request, str(refused), status=409)
    page_audit(request, **audit)
    updated = _visible_conversation(request, conversation_id, contacts=True)
    if updated is None:
        # Moved to a team the actor is not in: back to the inbox.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("workspace:inbox")
        return response
    context = conversation_context(request, updated)
    if panel_patient_ids(context):
        page_audit(
            request,
            resource_type="patient",
            resource_id=updated.pk,
            patient_ids=panel_patient_ids(context),
        )
    response = render(request, "workspace/_work.html", context)
    response["HX-Trigger"] = "live-inbox"
    return response


def _call_back(request, conversation, agent_number):
    """The conversation's waiting callback: Twilio dials the patient, then the agent."""
    callback = selectors.callback_pending_of(conversation_id=conversation.pk)
    if callback is None:
        raise services.CallbackRefused(
            "No callback is waiting on this conversation.", code="callback_not_pending"
        )
    services.callback_dial_request(callback=callback, agent=request.user, agent_number=agent_number)


def _escalation_action(request, conversation, data):
    if data["action"] == "escalate":
        escalation_services.escalation_manual_create(
            conversation=conversation, actor=request.user, reason=data["reason"]
        )
        return
    from escalation.selectors import escalation_get_visible

    escalation = escalation_get_visible(user=request.user, escalation_id=data["escalation"])
    if escalation is None:
        raise escalation_services.EscalationRefused(
            "That escalation is not one of your teams'.", code="not_found"
        )
    escalation_services.escalation_acknowledge(escalation=escalation, actor=request.user)


def _notice(request, text, *, status):
    response = render(request, "workspace/_notice.html", {"text": text}, status=status)
    response["HX-Retarget"] = "#notices"
    response["HX-Reswap"] = "innerHTML"
    return response


@require_POST
@staff_page(*CARE_ROLES)
def presence(request, conversation_id):
    """Viewing, replying or leaving: published to teammates, stored nowhere."""
    state = request.POST.get("state")
    kinds = {"viewing": live.PRESENCE, "typing": live.TYPING, "left": live.PRESENCE}
    if state not in kinds:
        return HttpResponse(status=400)
    team_id = (
        selectors.conversations_visible_to(request.user)
        .filter(pk=conversation_id)
        .values_list("team_id", flat=True)
        .first()
    )
    if team_id is None:
        return HttpResponse(status=404)
    live.publish_ephemeral(
        kind=kinds[state],
        conversation_id=conversation_id,
        team_id=team_id,
        user=request.user,
        left=state == "left" or None,
    )
    return HttpResponse(status=204)


@require_POST
@staff_page(*CARE_ROLES)
def break_glass(request, patient_id):
    """Emergency access to a patient outside the caller's teams, with a reason,
    through the API's service: BREAK_GLASS_MINUTES of read access, audited as
    emergency treatment, reviewed by compliance."""
    try:
        grant = compliance_services.break_glass_grant(
            user=request.user, patient_id=patient_id, reason=request.POST.get("reason", "")
        )
    except compliance_services.UnknownPatient:
        return not_found(request, resource_type="patient", resource_id=patient_id)
    except ValueError as refused:
        return _notice(request, str(refused), status=400)
    page_audit(
        request,
        resource_type="break_glass_grant",
        resource_id=grant.pk,
        patient_ids=[patient_id],
        action="break_glass",
        purpose_of_use="ETREAT",
    )
    response = redirect(_safe_next(request))
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
    return response


@require_GET
@staff_page(*CARE_ROLES)
def patient_timeline(request, patient_id):
    page = selectors.timeline_page(
        user=request.user,
        patient_id=patient_id,
        filters=selectors.TimelineFilters(),
        page=_page_request(request, 20),
    )
    if page is None:
        return not_found(
            request, resource_type="timeline", resource_id=patient_id, patient_ids=[patient_id]
        )
    page_audit(request, resource_type="timeline", resource_id=patient_id, patient_ids=[patient_id])
    return render(
        request,
        "workspace/_timeline.html",
        {
            "entries": page.rows,
            "patient_id": patient_id,
            "next_query": urlencode({"cursor": page.next.encode()}) if page.next else "",
        },
    )


# --- Attachments and recordings ------------------------------------------------------


def _denied_interaction(request, *, resource_type, resource_id, interaction_filter):
    patient_ids = (
        Interaction.objects.filter(**interaction_filter)
        .exclude(patient=None)
        .values_list("patient_id", flat=True)
    )
    return not_found(
        request,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_ids=list(patient_ids),
    )


@require_GET
@staff_page(*CARE_ROLES)
def attachment_download(request, attachment_id):
    """An email's attachment, for staff who may see its conversation: sent as a
    download (never shown inline), audited against its patient; anyone else gets
    the 404 page and a denied row."""
    attachment = selectors.attachment_get_visible(user=request.user, attachment_id=attachment_id)
    if attachment is None:
        return _denied_interaction(
            request,
            resource_type="attachment",
            resource_id=attachment_id,
            interaction_filter={"attachments__pk": attachment_id},
        )
    audit = {
        "resource_type": "attachment",
        "resource_id": attachment.pk,
        "patient_ids": [attachment.interaction.patient_id],
    }
    if attachment.content is None:
        page_audit(request, outcome="error", http_status=410, **audit)
        return render(
            request,
            "workspace/gone.html",
            {"what": "This attachment was not stored", "why": attachment.rejected_reason},
            status=410,
        )
    page_audit(request, **audit)
    response = HttpResponse(
        base64.b64decode(attachment.content), content_type="application/octet-stream"
    )
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=attachment.filename or f"attachment-{attachment.pk}"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@staff_page(*CARE_ROLES)
def call_recording(request, interaction_id):
    """A call's or voicemail's recording, streamed from Twilio through this view
    (the browser never sees Twilio's URL or credentials), audited per request."""
    call = selectors.call_get_visible(user=request.user, interaction_id=interaction_id)
    if call is None:
        return _denied_interaction(
            request,
            resource_type="recording",
            resource_id=interaction_id,
            interaction_filter={"pk": interaction_id},
        )
    audit = {
        "resource_type": "recording",
        "resource_id": interaction_id,
        "patient_ids": [call.interaction.patient_id],
    }
    try:
        content_type, chunks = recording_open(call)
    except RecordingUnavailable as unavailable:
        page_audit(request, outcome="error", http_status=502, **audit)
        return render(
            request,
            "workspace/gone.html",
            {"what": "The recording cannot be played now", "why": str(unavailable)},
            status=502,
        )
    page_audit(request, **audit)
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
