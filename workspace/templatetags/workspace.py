from django import template
from django.utils import timezone

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
