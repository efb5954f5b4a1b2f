import html
import re
from functools import lru_cache

from django import template
from django.template.defaultfilters import filesizeformat, linebreaksbr
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.text import Truncator, capfirst

register = template.Library()


@register.filter
def relative(value):
    """ "just now", "5 min ago", "3 h ago", then the weekday or the date."""
    if not value:
        return ""
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    local = timezone.localtime(value)
    if seconds < 6 * 86400:
        return local.strftime("%a %H:%M")
    return local.strftime("%-d %b")


@register.filter
def duration_words(seconds):
    """A countdown in words: "45 min", "2 h 10 min", "3 d 4 h"."""
    if seconds is None:
        return ""
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


DELIVERY_WORDS = {
    "queued": "Queued",
    "sending": "Sending",
    "sent": "Sent",
    "delivered": "Delivered",
    "failed": "Failed",
    "undeliverable": "Not delivered",
}


@register.filter
def delivery_word(state):
    return DELIVERY_WORDS.get(state, state or "")


@register.filter
def mask(address):
    """A contact address as the API masks it (channels_app.serializers)."""
    from channels_app.serializers import mask_address

    return mask_address(address)


CHANNEL_WORDS = {"sms": "SMS", "email": "Email", "voice": "Phone", "portal": "Patient portal"}


@register.filter
def channel_word(channel):
    return CHANNEL_WORDS.get(channel, channel)


_TIME_FORMAT = "%a %-d %b %Y, %H:%M %Z"


def _e(value):
    """django.utils.html.escape without its lazy-string check and SafeString: the
    same text, for markup built below (a row calls it twenty times)."""
    return html.escape(str(value))


@register.simple_tag
def when(at):
    """A <time> with the relative time shown, the exact time on hover and for
    screen readers; built here once per value (a page has a hundred of them)."""
    if not at:
        return ""
    exact = _e(timezone.localtime(at).strftime(_TIME_FORMAT))
    return mark_safe(  # noqa: S308 - every value is escaped
        f'<time datetime="{_e(at.isoformat())}" title="{exact}"><span aria-hidden="true">'
        f'{_e(relative(at))}</span><span class="visually-hidden">{exact}</span></time>'
    )


_CHANNEL_ICONS = {
    "sms": '<path d="M2 3h12v8H6l-3 3v-3H2z"/>',
    "email": '<path d="M1.5 3.5h13v9h-13zM1.5 3.5l6.5 5 6.5-5"/>',
    "voice": '<path d="M4 1.5l2 3-1.5 1.5c.8 1.8 2.2 3.2 4 4L10 8.5l3 2-1 3c-5 0-10-5-10-10z"/>',
    "portal": '<path d="M2 2.5h12v11H2zM2 5.5h12"/>',
}
_CHANNEL_LABELS = {"sms": "SMS", "email": "Email", "voice": "Call", "portal": "Portal"}


@register.simple_tag
@lru_cache(maxsize=32)  # a handful of channels; the same markup every time
def channel_badge(channel):
    """The channel as an icon (hidden from screen readers) and its word."""
    return mark_safe(  # noqa: S308 - fixed markup from the two constant tables above
        f'<span class="channel channel-{_e(channel)}"><svg class="icon" aria-hidden="true" '
        'focusable="false" viewBox="0 0 16 16" width="14" height="14" fill="none" '
        f'stroke="currentColor" stroke-width="1.5">{_CHANNEL_ICONS.get(channel, "")}</svg>'
        f"{_e(_CHANNEL_LABELS.get(channel, channel))}</span>"
    )


def _seconds_words(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    if not minutes:
        return f"{seconds} s"
    return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"


CALL_OUTCOMES = {
    "in_progress": "in progress",
    "answered": "answered",
    "abandoned": "hung up while waiting",
    "voicemail": "went to voicemail",
    "missed": "missed",
    "callback": "asked to be called back",
}


@register.simple_tag
def call_facts(call):
    """ " · answered · waited 1 min 5 s · lasted 4 min": what happened to a call."""
    parts = []
    if call.queue_result in CALL_OUTCOMES and call.queue_result != "voicemail":
        parts.append(CALL_OUTCOMES[call.queue_result])
    if call.queue_wait_seconds is not None:
        parts.append(f"waited {_seconds_words(call.queue_wait_seconds)}")
    if call.duration_seconds is not None:
        parts.append(f"lasted {_seconds_words(call.duration_seconds)}")
    return "".join(f" · {part}" for part in parts)


# Twilio's error codes a failed text most often ends with, in the staff's words.
TWILIO_REASONS = {
    "21211": "this is not a valid phone number",
    "21408": "texts to this country are not enabled",
    "21610": "the patient replied STOP to this number",
    "21612": "this number cannot be texted from the practice's number",
    "21614": "this number cannot receive texts (a landline?)",
    "30003": "the phone is switched off or out of reach",
    "30004": "the patient's phone or carrier blocked it",
    "30005": "the number is unknown or no longer in service",
    "30006": "a landline, or a carrier that cannot take texts",
    "30007": "the carrier filtered it as spam",
}
_TWILIO_CODE = re.compile(r"\bcode (\d{5})\b")


@register.filter
def delivery_reason(error):
    """Why a delivery failed, in words, with the provider's code kept for support:
    "this is not a valid phone number (Twilio 21211)"."""
    if not error:
        return ""
    found = _TWILIO_CODE.search(error)
    if found and found.group(1) in TWILIO_REASONS:
        return f"{TWILIO_REASONS[found.group(1)]} (Twilio {found.group(1)})"
    return error


# --- Inbox rows and thread messages, built here -------------------------------------
#
# A page shows fifty inbox rows and up to fifty messages. Through the template
# engine (an include per row, two {% url %}, twenty variable lookups and ifs) the
# rows were half of the inbox page's time and the messages a quarter of the
# thread's, what made the pages 1.8x the API for the same data (bench/workspace.py).
# Built here, as the compliance desk's audit rows are: every value escaped, the
# markup byte for byte what the templates produced.

_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def _url_maker(context, name):
    """A function id -> URL of `name`, reversing once per template render (the
    script prefix and URLconf are the request's, so never cached across requests)."""
    key = ("workspace-url", name)
    cache = context.render_context
    if key not in cache:
        before, _, after = reverse(name, args=[_URL_PLACEHOLDER]).partition(_URL_PLACEHOLDER)
        before, after = _e(before), _e(after)
        cache[key] = lambda pk: f"{before}{_e(pk)}{after}"
    return cache[key]


def _user_pk(context):
    user = context.get("user")
    return getattr(user, "pk", None)


@register.simple_tag(takes_context=True)
def inbox_row(context, row):
    """One inbox row (<li>): the conversation's link, who, when, a preview and badges."""
    e = _e
    selected = context.get("selected")
    query = context.get("query")
    is_selected = row["id"] == selected
    current = 'aria-current="true"' if is_selected else ""
    href = _url_maker(context, "workspace:conversation")(row["id"])
    if query:
        href += f"?{e(query)}"
    classes = "row"
    if row["unread"]:
        classes += " is-unread"
    if is_selected:
        classes += " is-selected"
    classes += f" priority-{e(row['priority'])}"
    if row["escalated"]:
        classes += " is-escalated"
    who = e(row["patient_name"]) if row["patient_name"] else e(row["contact"] or "Unknown sender")
    outbound = (
        '<span class="visually-hidden">Last sent by staff: </span>'
        '<span aria-hidden="true">You: </span>'
        if row["last_direction"] == "outbound"
        else ""
    )
    badges = []
    badges.append('<span class="badge badge-unread">Unread</span>' if row["unread"] else "")
    if row["escalated"]:
        red = " badge-red" if row["priority"] == "urgent" else ""
        reason = row.get("escalation_reason")
        reason = f": {e(Truncator(reason).chars(60))}" if reason else ""
        badges.append(f'<span class="badge badge-escalated{red}">Escalated{reason}</span>')
    else:
        badges.append("")
    if row["priority"] == "urgent":
        badges.append('<span class="badge badge-red">Urgent</span>')
    elif row["priority"] == "high":
        badges.append('<span class="badge badge-high">High priority</span>')
    else:
        badges.append("")
    remaining = row["sla_remaining"]
    if remaining is None:
        badges.append("")
    elif remaining < 0:
        badges.append(
            f'<span class="badge badge-red">Reply overdue {e(duration_words(remaining))}</span>'
        )
    else:
        badges.append(
            f'<span class="badge badge-sla">Reply due in {e(duration_words(remaining))}</span>'
        )
    if row["assignee_name"]:
        whose = (
            "Assigned to you"
            if row["assignee"] == _user_pk(context)
            else f"Assigned to {e(row['assignee_name'])}"
        )
        badges.append(f'<span class="badge badge-assignee">{whose}</span>')
    else:
        badges.append('<span class="badge badge-open">Unassigned</span>')
    status = row["status"]
    badges.append(f'<span class="badge">{e(capfirst(status))}</span>' if status != "open" else "")
    badges.append(
        "".join(f'<span class="badge badge-label">{e(label)}</span>' for label in row["labels"])
    )
    badge_lines = "".join(f"      {badge}\n" for badge in badges)
    return mark_safe(  # noqa: S308 - every value above is escaped
        f'<li class="{classes}" data-conversation="{e(row["id"])}">\n'
        f'  <a class="row-link" href="{href}"\n'
        f'     hx-get="{href}" hx-target="#work" hx-swap="outerHTML" hx-push-url="true"\n'
        f"     {current}>\n"
        '    <span class="row-top">\n'
        f"      {channel_badge(row['channel'])}\n"
        f'      <span class="who">{who}</span>\n'
        f"      {when(row['last_interaction'])}\n"
        "    </span>\n"
        f'    <span class="preview">{outbound}{e(row["preview"] or "(no text)")}</span>\n'
        '    <span class="badges">\n'
        f"{badge_lines}"
        "    </span>\n"
        "  </a>\n"
        "</li>\n"
    )


def _message_who(m):
    if m["kind"] == "note":
        return f"Note by {_e(m['author'])}"
    if m["direction"] == "inbound":
        return "Patient"
    return _e(m["author"]) if m["author"] else "Sent automatically"


def _message_channel(m):
    kind = m["kind"]
    if kind == "call":
        return channel_badge("voice")
    if kind == "voicemail":
        return f"{channel_badge('voice')} Voicemail"
    if kind == "note":
        return "Internal, never sent"
    return channel_badge(m["channel"])


def _call_body(context, m, details):
    e = _e
    call = details.call if details is not None else None
    if m["kind"] == "voicemail":
        what = "Voicemail left by the patient"
    elif m["direction"] == "inbound":
        what = "Incoming call"
    else:
        what = "Outgoing call"
    facts = e(call_facts(call)) if call else ""
    recording = ""
    if call is not None and call.recording_url:
        url = _url_maker(context, "workspace:recording")(m["id"])
        recording = (
            f'<audio class="recording" controls preload="none" src="{url}">\n'
            f'      <a href="{url}">Download the recording</a></audio>'
        )
    if call is not None and call.transcript:
        text = (
            '<div class="transcript"><p class="transcript-label">Transcript</p>'
            f"<p>{linebreaksbr(call.transcript, autoescape=True)}</p></div>"
        )
    elif m["body"]:
        text = f'<div class="msg-body">{linebreaksbr(m["body"], autoescape=True)}</div>'
    else:
        text = ""
    return f'\n    <p class="call-facts">{what}{facts}</p>\n    {recording}\n    {text}\n    '


def _attachment(context, a):
    e = _e
    name = e(a.filename or "Unnamed file")
    if a.rejected_reason:
        return (
            f'<li><span class="attachment-rejected">{name} ({e(filesizeformat(a.size))}): '
            f"not stored, {e(a.rejected_reason)}</span></li>"
        )
    url = _url_maker(context, "workspace:attachment")(a.pk)
    return (
        f'<li><a href="{url}" download>{name}</a> <span class="muted">'
        f"({e(a.content_type)}, {e(filesizeformat(a.size))})</span></li>"
    )


def _text_body(context, m, details):
    body = linebreaksbr(m["body"], autoescape=True) or "(no text)"
    quoted = details.quoted_text if details is not None else None
    quoted = (
        '<details class="quoted"><summary>Show the quoted earlier message</summary>'
        f"<blockquote>{linebreaksbr(quoted, autoescape=True)}</blockquote></details>"
        if quoted
        else ""
    )
    attachments = details.attachments if details is not None else None
    attachments = (
        '<ul class="attachments" aria-label="Attachments">'
        + "".join(_attachment(context, a) for a in attachments)
        + "</ul>"
        if attachments
        else ""
    )
    return f'\n    <div class="msg-body">{body}</div>\n    {quoted}\n    {attachments}\n    '


@register.simple_tag(takes_context=True)
def thread_message(context, m):
    """One message of a thread (<li>): an event as a line; a text, email, call,
    voicemail or note with who, the channel, when, its body or call facts and,
    sent by staff, its delivery state."""
    e = _e
    if m["kind"] == "event":
        return mark_safe(  # noqa: S308 - every value is escaped
            f'<li class="msg msg-event" id="m-{e(m["id"])}"><p>{e(m["body"])} · '
            f"{when(m['occurred_at'])}</p></li>\n"
        )
    details = m.get("details")
    new = " is-new" if str(m["id"]) == context.get("highlight") else ""
    if m["kind"] in ("call", "voicemail"):
        body = _call_body(context, m, details)
    else:
        body = _text_body(context, m, details)
    status = m["delivery_status"]
    delivery = ""
    if m["direction"] == "outbound" and status:
        reason = ""
        # "in" a string, as the template had it: a substring test.
        if m["delivery_error"] and status in "failed undeliverable":
            reason = f": {e(delivery_reason(m['delivery_error']))}"
        delivery = (
            f'<p class="delivery delivery-{e(status)}" data-delivery="{e(status)}">'
            f"{e(delivery_word(status))}{reason}</p>"
        )
    return mark_safe(  # noqa: S308 - every value above is escaped
        f'<li class="msg msg-{e(m["direction"])} kind-{e(m["kind"])}{new}" id="m-{e(m["id"])}" '
        f'data-direction="{e(m["direction"])}">\n'
        "  <article>\n"
        '    <header class="msg-header">\n'
        f'      <span class="msg-who">{_message_who(m)}</span>\n'
        f'      <span class="msg-channel">{_message_channel(m)}</span>\n'
        f"      {when(m['occurred_at'])}\n"
        f"    </header>\n    {body}\n    {delivery}\n"
        "  </article>\n"
        "</li>\n"
    )
