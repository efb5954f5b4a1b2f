"""Finding patients and matching an unknown sender: search by phone, email or MRN
through the blind indexes (patients.selectors.patient_list, as the API's patient
list), link a conversation to a patient (channels_app.services.conversation_change,
as the API's PATCH), or create the patient with the API's validation
(patients.serializers.PatientSerializer, patients.services.patient_create)."""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from channels_app import selectors as channel_selectors
from channels_app import services as channel_services
from channels_app.models import Conversation
from contactcenter import roles
from patients import selectors as patient_selectors
from patients import services as patient_services
from patients.models import Channel
from patients.serializers import PatientSerializer
from workspace.audit import page_audit
from workspace.pages import CARE_ROLES, not_found, staff_page

SEARCH_LIMIT = 20


def search_patients(user, text):
    """Visible patients whose phone, email or MRN is exactly `text` (a blind index
    lookup each: never a scan of decrypted values), at most SEARCH_LIMIT."""
    text = (text or "").strip()[:254]
    if not text:
        return []
    lookups = [{"email": text}] if "@" in text else [{"phone": text}, {"mrn": text}]
    found, seen = [], set()
    for lookup in lookups:
        try:
            patients = patient_selectors.patient_list(user=user, **lookup)[:SEARCH_LIMIT]
        except patient_selectors.LookupValueInvalid:
            continue
        for patient in patients:
            if patient.pk not in seen:
                seen.add(patient.pk)
                found.append(patient)
    return found[:SEARCH_LIMIT]


def sender_matches(user, conversation):
    """The visible patients who have the unknown sender's number or address (more
    than one: a shared line, staff pick)."""
    address = conversation.contact_address
    if conversation.patient_id or not address:
        return []
    if conversation.channel == Channel.EMAIL:
        return search_patients(user, address if "@" in address else "")
    if conversation.channel in (Channel.SMS, Channel.VOICE):
        try:
            return list(patient_selectors.patient_list(user=user, phone=address)[:SEARCH_LIMIT])
        except patient_selectors.LookupValueInvalid:
            return []
    return []


def _open_conversations_by_patient(user, patients):
    """{patient id: [conversation, ...]} of their open conversations, one query."""
    by_patient = {}
    if not patients:
        return by_patient
    for conversation in (
        channel_selectors.conversations_visible_to(user)
        .filter(
            patient_id__in=[p.pk for p in patients],
            status__in=list(Conversation.ACTIVE_STATUSES),
        )
        .order_by("-last_interaction_at")
    ):
        by_patient.setdefault(conversation.patient_id, []).append(conversation)
    return by_patient


@require_GET
@staff_page(*CARE_ROLES)
def patient_search(request):
    """The `/` search: patients by exact phone, email or MRN, with their open
    conversations; the page names every patient it shows in its audit row."""
    text = request.GET.get("q", "")
    patients = search_patients(request.user, text)
    conversations = _open_conversations_by_patient(request.user, patients)
    page_audit(request, resource_type="patient", patient_ids=[p.pk for p in patients])
    return render(
        request,
        "workspace/patient_search.html",
        {
            "q": text.strip(),
            "results": [(p, conversations.get(p.pk, [])) for p in patients],
        },
    )


def _conversation_or_denied(request, conversation_id):
    found = channel_selectors.conversation_get_visible(
        user=request.user, conversation_id=conversation_id
    )
    if found is None:
        patient_ids = (
            Conversation.objects.filter(pk=conversation_id)
            .exclude(patient=None)
            .values_list("patient_id", flat=True)
        )
        return None, not_found(
            request,
            resource_type="conversation",
            resource_id=conversation_id,
            patient_ids=list(patient_ids),
        )
    return found, None


def _panel(request, conversation, *, status=200, **extra):
    from workspace.views import conversation_context, panel_patient_ids

    context = conversation_context(request, conversation) | extra
    if panel_patient_ids(context):
        page_audit(
            request,
            resource_type="patient",
            resource_id=conversation.pk,
            patient_ids=panel_patient_ids(context),
        )
    response = render(request, "workspace/_work.html", context, status=status)
    if status == 200:
        response["HX-Trigger"] = "live-inbox"
    return response


@require_GET
@staff_page(*CARE_ROLES)
def match_search(request, conversation_id):
    """Patients to link an unknown sender to, found by phone, email or MRN."""
    found, denied = _conversation_or_denied(request, conversation_id)
    if denied:
        return denied
    text = request.GET.get("q", "")
    patients = search_patients(request.user, text)
    page_audit(
        request,
        resource_type="patient",
        resource_id=found.pk,
        patient_ids=[p.pk for p in patients],
    )
    return render(
        request,
        "workspace/_match_results.html",
        {"conversation": found, "candidates": patients, "q": text.strip(), "searched": True},
    )


@require_POST
@staff_page(*CARE_ROLES)
def match_link(request, conversation_id):
    """Link the conversation to a patient the caller may see."""
    found, denied = _conversation_or_denied(request, conversation_id)
    if denied:
        return denied
    patient = (
        patient_selectors.patients_visible_to(request.user)
        .filter(pk=request.POST.get("patient") or None, merged_into__isnull=True)
        .first()
        if _is_uuid(request.POST.get("patient"))
        else None
    )
    audit = {"resource_type": "conversation", "resource_id": found.pk, "action": "update"}
    if patient is None:
        page_audit(request, outcome="error", http_status=400, **audit)
        return _panel(request, found, status=400, match_error="Pick a patient from the list.")
    try:
        channel_services.conversation_change(
            conversation=found,
            actor=request.user,
            actor_is_supervisor=roles.has_role(request.user, roles.SUPERVISOR),
            changes={"patient": patient},
        )
    except channel_services.ConversationChangeRefused as refused:
        page_audit(request, outcome="error", http_status=409, patient_ids=[patient.pk], **audit)
        return _panel(request, found, status=409, match_error=str(refused))
    page_audit(request, patient_ids=[patient.pk], **audit)
    return _after_change(request, conversation_id)


def _after_change(request, conversation_id):
    from django.http import HttpResponse
    from django.urls import reverse

    updated = channel_selectors.conversation_get_visible(
        user=request.user, conversation_id=conversation_id
    )
    if updated is None:
        # Moved to the patient's team, which is not the caller's.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("workspace:inbox")
        return response
    return _panel(request, updated)


@require_POST
@staff_page(*CARE_ROLES)
def match_create(request, conversation_id):
    """A new patient for the unknown sender, with the sender's number or address,
    validated as the API validates a new patient, then linked."""
    found, denied = _conversation_or_denied(request, conversation_id)
    if denied:
        return denied
    audit = {"resource_type": "patient", "action": "create"}
    contact = found.contact_address
    data = {
        "mrn": request.POST.get("mrn", ""),
        "given_name": request.POST.get("given_name", ""),
        "family_name": request.POST.get("family_name", ""),
        "time_zone": settings.PRACTICE_TIME_ZONE,
    }
    if request.POST.get("birth_date"):
        data["birth_date"] = request.POST["birth_date"]
    if contact and found.channel == Channel.EMAIL:
        data["emails"] = [{"value": contact, "preferred": True}]
    elif contact and found.channel in (Channel.SMS, Channel.VOICE):
        data["phones"] = [{"value": contact, "preferred": True}]
    serializer = PatientSerializer(data=data)
    if not serializer.is_valid():
        page_audit(request, outcome="error", http_status=400, **audit)
        return _panel(
            request,
            found,
            status=400,
            create_errors=_errors(serializer.errors),
            create_values=request.POST,
        )
    try:
        patient = patient_services.patient_create(team=found.team, **serializer.service_kwargs())
    except patient_services.DuplicateMrn:
        page_audit(request, outcome="error", http_status=409, **audit)
        return _panel(
            request,
            found,
            status=409,
            create_errors=["A patient with this MRN exists: search for it and link it instead."],
            create_values=request.POST,
        )
    page_audit(request, resource_id=patient.pk, patient_ids=[patient.pk], **audit)
    channel_services.conversation_change(
        conversation=found,
        actor=request.user,
        actor_is_supervisor=roles.has_role(request.user, roles.SUPERVISOR),
        changes={"patient": patient},
    )
    return _after_change(request, conversation_id)


LABELS = {
    "mrn": "MRN",
    "given_name": "First name",
    "family_name": "Last name",
    "birth_date": "Date of birth",
}


def _errors(errors):
    lines = []
    for field, messages in errors.items():
        if isinstance(messages, dict | list) and messages and isinstance(messages[0], dict):
            messages = [m for item in messages for ms in item.values() for m in ms]
        for message in messages:
            lines.append(f"{LABELS.get(field, field.replace('_', ' ').capitalize())}: {message}")
    return lines


def _is_uuid(value):
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
