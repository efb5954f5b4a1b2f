"""Demo channel accounts and a few conversations for `make run`. Idempotent."""

from django.utils import timezone

from channels_app.models import ChannelAccount, Interaction
from channels_app.services import inbound_record
from contactcenter.models import Team
from patients.models import Channel

DEMO_ACCOUNTS = (
    (Channel.SMS, "Main line (SMS)", "+15005550006", "North Clinic"),
    (Channel.VOICE, "Main line (voice)", "+15005550006", "North Clinic"),
    (Channel.EMAIL, "Care mailbox", "care@practice.test", "North Clinic"),
    (Channel.PORTAL, "Patient portal", "http://127.0.0.1:9/portal-webhook", "North Clinic"),
)

DEMO_MESSAGES = (
    ("SMdemo0001", "+14155550101", "Hola, ¿puedo cambiar mi cita del jueves?"),
    ("SMdemo0002", "+14155550102", "Is my prescription ready for pickup?"),
    ("SMdemo0003", "+14155550202", "Who is this? We both use this phone."),
)


def load_demo_channels():
    created = 0
    for kind, name, address, team_name in DEMO_ACCOUNTS:
        _, was_created = ChannelAccount.objects.get_or_create(
            kind=kind,
            address=address,
            defaults={"name": name, "team": Team.objects.get(name=team_name)},
        )
        created += was_created
    account = ChannelAccount.objects.get(kind=Channel.SMS, address="+15005550006")
    for sid, sender, body in DEMO_MESSAGES:
        if Interaction.objects.filter(channel=Channel.SMS, provider_id=sid).exists():
            continue
        inbound_record(
            channel=Channel.SMS,
            account=account,
            address=sender,
            body=body,
            provider_id=sid,
            occurred_at=timezone.now(),
            source="demo",
            raw_payload={"demo": True},
        )
        created += 1
    return created
