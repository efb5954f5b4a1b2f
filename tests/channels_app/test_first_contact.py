"""A first message from an address: the sender's patient found by a fixed statement
(resolve_patient), which must answer as the patients' selectors do, and the new
conversation granted to its team."""

import pytest
from django.contrib.auth.models import Permission
from django.test.utils import CaptureQueriesContext

from channels_app.models import ConversationGroupObjectPermission
from channels_app.services import conversation_open, resolve_patient
from patients.models import Channel
from patients.selectors import patients_by_email, patients_by_phone
from patients.services import patient_merge
from tests.factories import make_patient

pytestmark = pytest.mark.django_db

PHONE = "+14155550142"
EMAIL = "ada@example.com"


def through_selectors(channel, address):
    matches = (
        patients_by_email(raw_email=address)
        if channel == Channel.EMAIL
        else (patients_by_phone(raw_phone=address))
    )
    found = list(matches.select_related("team")[:2])
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize(("channel", "address"), [(Channel.SMS, PHONE), (Channel.EMAIL, EMAIL)])
def test_the_sender_is_found_as_the_selectors_find_it(front_desk, channel, address):
    from django.db import connection

    assert resolve_patient(channel=channel, address=address) is None

    ada = make_patient(team=front_desk, phones=(PHONE,), emails=(EMAIL,))
    with CaptureQueriesContext(connection) as queries:
        found = resolve_patient(channel=channel, address=address)
    assert found == ada == through_selectors(channel, address)
    assert len(queries) == 1
    # The team came with it, and the values read back as the ORM reads them.
    with CaptureQueriesContext(connection) as queries:
        assert found.team == front_desk
        assert (found.given_name, found.family_name) == (ada.given_name, ada.family_name)
    assert len(queries) == 0

    # A shared family line: two patients, no guess.
    sibling = make_patient(team=front_desk, phones=(PHONE,), emails=(EMAIL,), given_name="Bea")
    assert resolve_patient(channel=channel, address=address) is None
    assert through_selectors(channel, address) is None

    # Merged into Ada, the sibling no longer counts.
    patient_merge(survivor=ada, duplicate=sibling)
    assert resolve_patient(channel=channel, address=address) == ada
    assert through_selectors(channel, address) == ada


def test_a_voice_caller_is_found_by_phone_and_a_portal_sender_never(front_desk):
    ada = make_patient(team=front_desk, phones=(PHONE,))

    assert resolve_patient(channel=Channel.VOICE, address=PHONE) == ada
    assert resolve_patient(channel=Channel.PORTAL, address=PHONE) is None


def test_a_new_conversation_is_granted_to_its_team_once(front_desk):
    conversation = conversation_open(channel=Channel.SMS, team=front_desk, contact_address=PHONE)

    grants = ConversationGroupObjectPermission.objects.filter(content_object=conversation)
    assert [(g.group_id, g.permission.codename) for g in grants] == [
        (front_desk.group_id, "view_conversation")
    ]
    assert conversation.pk is not None
    assert not conversation._state.adding


def test_a_grant_without_its_permission_is_refused(front_desk):
    Permission.objects.filter(codename="view_conversation").delete()

    with pytest.raises(Permission.DoesNotExist):
        conversation_open(channel=Channel.SMS, team=front_desk, contact_address=PHONE)
