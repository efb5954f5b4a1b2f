import pytest

from contactcenter import roles
from tests.escalation import conftest as escalation_fixtures
from tests.escalation.conftest import make_available
from tests.factories import TeamFactory, make_staff
from understanding.models import IntentRoute, SelfServiceAnswer

front_desk = escalation_fixtures.front_desk
sms_account = escalation_fixtures.sms_account
post_twilio = escalation_fixtures.post_twilio
blank_configuration = escalation_fixtures.blank_configuration
defaults = escalation_fixtures.defaults
clinical = escalation_fixtures.clinical
nurse = escalation_fixtures.nurse

HOURS_EN = "We are open Monday to Friday 8am to 6pm and Saturday 9am to 1pm."
HOURS_ES = "Abrimos de lunes a viernes de 8 a 18 h y los sábados de 9 a 13 h."


@pytest.fixture
def billing(db):
    return TeamFactory(name="Billing")


@pytest.fixture
def biller(billing):
    return make_available(make_staff("biller", role=roles.AGENT, teams=[billing]))


@pytest.fixture
def desk_agent(front_desk):
    return make_available(make_staff("desk-agent", role=roles.AGENT, teams=[front_desk]))


@pytest.fixture
def routes(billing, clinical):
    IntentRoute.objects.create(intent="billing", team=billing, min_confidence=0.6)
    IntentRoute.objects.create(intent="refill", team=clinical, min_confidence=0.6)
    IntentRoute.objects.create(intent="clinical_question", team=clinical, min_confidence=0.5)


@pytest.fixture
def answers(db, settings):
    settings.PRACTICE_PHONE = "+1 415 555 0100"
    SelfServiceAnswer.objects.create(
        topic="hours", language="en", keywords="open, close, hours, saturday", body=HOURS_EN
    )
    SelfServiceAnswer.objects.create(
        topic="hours", language="es", keywords="abren, cierran, horario, sabado", body=HOURS_ES
    )
    SelfServiceAnswer.objects.create(
        topic="parking",
        language="en",
        keywords="park, parking, garage",
        body="Free parking behind the building.",
    )
