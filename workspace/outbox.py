"""The local outbox in the workspace: what the local providers of `make run`
recorded instead of sending (texts, calls, email, portal replies), for the
conversations the agent's teams may see, newest first, paged by keyset and
audited like every list of PHI (naming every patient on the page). Production
refuses the local providers (config checks), so there the page says so."""

from django.conf import settings
from django.db.models import Q
from django.shortcuts import render
from django.views.decorators.http import require_GET

from channels_app.selectors import local_outbox_visible_to
from contactcenter.keyset import Cursor, InvalidCursor
from workspace.audit import page_audit
from workspace.pages import CARE_ROLES, staff_page

PAGE_SIZE = 50
LOCAL_EMAIL_BACKEND = "channels_app.local_outbox.EmailBackend"


def local_providers_on():
    """Whether any channel goes to the local outbox (the nav shows the page then)."""
    return (
        "local" in (settings.SMS_PROVIDER, settings.VOICE_PROVIDER, settings.PORTAL_PROVIDER)
        or settings.EMAIL_BACKEND == LOCAL_EMAIL_BACKEND
    )


def _cursor(request):
    text = request.GET.get("cursor")
    if not text:
        return None
    try:
        return Cursor.decode(text)
    except InvalidCursor:
        return None


@require_GET
@staff_page(*CARE_ROLES)
def local_outbox(request):
    messages = local_outbox_visible_to(request.user).select_related("outbound__interaction")
    cursor = _cursor(request)
    if cursor is not None:
        stamp, row_id = cursor.key
        messages = messages.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, id__lt=row_id))
    rows = list(messages.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    page_audit(
        request,
        resource_type="local_outbox_message",
        patient_ids=list(
            dict.fromkeys(m.outbound.interaction.patient_id for m in rows if m.outbound)
        ),
        rows=len(rows),
    )
    return render(
        request,
        "workspace/outbox.html",
        {
            "rows": rows,
            "local_on": local_providers_on(),
            "next_cursor": Cursor(key=(rows[-1].created_at, rows[-1].pk)).encode()
            if more
            else None,
        },
    )
