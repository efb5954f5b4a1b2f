import importlib

import pytest
from django.apps import apps
from django.utils import timezone

from channels_app.models import Conversation
from channels_app.services import conversation_open, inbound_record
from contactcenter import roles
from contactcenter.models import StaffProfile
from escalation.models import EscalationRule, SlaPolicy
from patients.models import Channel
from tests.channels_app import conftest as channels_fixtures
from tests.factories import TeamFactory, make_staff

# The channel fixtures these tests share: the front desk team, its SMS line and
# signed Twilio webhook posts.
front_desk = channels_fixtures.front_desk
sms_account = channels_fixtures.sms_account
post_twilio = channels_fixtures.post_twilio

_defaults = importlib.import_module("escalation.migrations.0002_default_rules_and_sla")


@pytest.fixture
def blank_configuration(db):
    """No rules and no SLA policies, whatever ran before: the data migration installs
    the defaults, but a transactional test empties every table when it ends, so
    whether they are there would depend on test order. Tests ask for `defaults`."""
    EscalationRule.objects.all().delete()
    SlaPolicy.objects.all().delete()


@pytest.fixture
def defaults(blank_configuration):
    """The shipped rules and SLA policies, as the data migration installs them."""
    _defaults.add_defaults(apps, None)


@pytest.fixture
def clinical(db):
    return TeamFactory(name="Clinical", is_clinical=True)


def make_available(user, *, capacity=30, availability=StaffProfile.Availability.AVAILABLE):
    StaffProfile.objects.update_or_create(
        user=user, defaults={"availability": availability, "capacity": capacity}
    )
    return user


@pytest.fixture
def nurse(clinical):
    return make_available(make_staff("nurse", role=roles.CLINICIAN, teams=[clinical]))


@pytest.fixture
def clinical_supervisor(clinical):
    return make_staff("clinical-lead", role=roles.SUPERVISOR, teams=[clinical])


@pytest.fixture
def desk_supervisor(front_desk):
    return make_staff("desk-lead", role=roles.SUPERVISOR, teams=[front_desk])


def receive(
    team,
    body,
    *,
    conversation=None,
    patient=None,
    channel=Channel.SMS,
    address="+14155550100",
    occurred_at=None,
    kind="message",
):
    """An inbound message stored as the webhooks store it; returns the interaction."""
    occurred_at = occurred_at or timezone.now()
    if conversation is None:
        conversation = conversation_open(
            channel=channel,
            team=team,
            patient=patient,
            contact_address=address,
            occurred_at=occurred_at,
        )
    return inbound_record(
        channel=channel,
        account=None,
        address=address,
        body=body,
        provider_id="",
        occurred_at=occurred_at,
        source="test",
        raw_payload={},
        conversation=conversation,
        kind=kind,
    ).interaction


def reload(conversation):
    return Conversation.objects.get(pk=conversation.pk)
