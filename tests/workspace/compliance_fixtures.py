"""Data for the compliance desk's tests, made through the services and the pages
themselves: a North patient whose SMS conversation holds known message bodies,
an agent who reads it in the workspace, an outsider (South) who reads it under a
break-glass grant, a disclosure, and the compliance officer."""

from dataclasses import dataclass

import pytest
from django.test import Client

from compliance import services as compliance_services
from compliance.anchoring import checkpoint_publish_head
from compliance.chain import seal_pending
from compliance.models import BreakGlassGrant
from contactcenter import roles
from tests.factories import make_staff
from tests.workspace.conftest import receive_sms

# Message text that must never reach a compliance page, export or PDF.
BODIES = (
    "BODY-SECRET chest pain since Tuesday quokkapain",
    "BODY-SECRET my HIV results zebrafinchresult",
    "BODY-SECRET reply about the biopsy marzipanbiopsy",
)
REASON = "Patient collapsed in the South clinic lobby; need allergy list"


@dataclass
class DeskData:
    officer: object
    agent: object
    outsider: object
    patient_id: object
    conversation: object
    grant: object


def build_desk_data(*, agent, north, south, sms_account, make_sms_conversation):
    officer = make_staff("officer.desk", role=roles.COMPLIANCE, totp=True)
    outsider = make_staff("sam.south", role=roles.AGENT, teams=[south], totp=True)
    conversation = make_sms_conversation(7, body=BODIES[0])
    phone = conversation.contact_address
    for body in BODIES[1:]:
        receive_sms(account=sms_account, phone=phone, body=body)
    # The agent's read of the patient, through the workspace (audited as it is).
    reader = Client()
    reader.force_login(agent)
    assert reader.get(f"/conversations/{conversation.pk}/").status_code == 200
    # The outsider breaks the glass and reads the conversation under the grant.
    outside = Client()
    outside.force_login(outsider)
    response = outside.post(
        f"/patients/{conversation.patient_id}/break-glass/", {"reason": REASON, "next": "/inbox/"}
    )
    assert response.status_code == 302
    grant = BreakGlassGrant.objects.get(user=outsider)
    assert outside.get(f"/conversations/{conversation.pk}/").status_code == 200
    compliance_services.disclosure_create(
        patient_id=conversation.patient_id,
        disclosed_at=grant.granted_at,
        recipient_name="County Public Health Office",
        recipient_address="1 Main St",
        description="Immunisation record",
        purpose="Public health reporting",
        created_by=officer,
    )
    seal_pending()
    checkpoint_publish_head()
    return DeskData(
        officer=officer,
        agent=agent,
        outsider=outsider,
        patient_id=conversation.patient_id,
        conversation=conversation,
        grant=grant,
    )


@pytest.fixture
def desk_data(agent, north, south, sms_account, make_sms_conversation):
    return build_desk_data(
        agent=agent,
        north=north,
        south=south,
        sms_account=sms_account,
        make_sms_conversation=make_sms_conversation,
    )
