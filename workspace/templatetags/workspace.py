import re

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

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


@register.simple_tag
def when(at):
    """A <time> with the relative time shown, the exact time on hover and for
    screen readers; built here once per value (a page has a hundred of them)."""
    if not at:
        return ""
    exact = timezone.localtime(at).strftime(_TIME_FORMAT)
    return format_html(
        '<time datetime="{}" title="{}"><span aria-hidden="true">{}</span>'
        '<span class="visually-hidden">{}</span></time>',
        at.isoformat(),
        exact,
        relative(at),
        exact,
    )


_CHANNEL_ICONS = {
    "sms": '<path d="M2 3h12v8H6l-3 3v-3H2z"/>',
    "email": '<path d="M1.5 3.5h13v9h-13zM1.5 3.5l6.5 5 6.5-5"/>',
    "voice": '<path d="M4 1.5l2 3-1.5 1.5c.8 1.8 2.2 3.2 4 4L10 8.5l3 2-1 3c-5 0-10-5-10-10z"/>',
    "portal": '<path d="M2 2.5h12v11H2zM2 5.5h12"/>',
}
_CHANNEL_LABELS = {"sms": "SMS", "email": "Email", "voice": "Call", "portal": "Portal"}


@register.simple_tag
def channel_badge(channel):
    """The channel as an icon (hidden from screen readers) and its word."""
    return mark_safe(  # noqa: S308 - fixed markup from the two constant tables above
        f'<span class="channel channel-{escape(channel)}"><svg class="icon" aria-hidden="true" '
        'focusable="false" viewBox="0 0 16 16" width="14" height="14" fill="none" '
        f'stroke="currentColor" stroke-width="1.5">{_CHANNEL_ICONS.get(channel, "")}</svg>'
        f"{escape(_CHANNEL_LABELS.get(channel, channel))}</span>"
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
