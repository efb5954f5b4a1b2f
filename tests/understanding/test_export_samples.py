"""The redacted export of recent messages with their intent."""

import pytest
from django.core.management import CommandError, call_command

from compliance.models import AuditEvent
from tests.escalation.conftest import receive
from tests.factories import make_patient
from understanding.services import interaction_analyse

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]


def test_export_holds_redacted_text_and_is_audited_with_its_patients(front_desk, tmp_path):
    patient = make_patient(team=front_desk)
    interaction = receive(
        front_desk,
        "I was charged twice for my visit on 03/14/2025, my number is (415) 555-0134",
        patient=patient,
    )
    interaction_analyse(interaction=interaction)
    out = tmp_path / "samples.tsv"

    call_command("export_intent_samples", "--output", str(out))

    header, row = out.read_text().splitlines()
    assert header == "intent\tconfidence\tlanguage\taction\ttext"
    intent, _confidence, language, _action, text = row.split("\t")
    assert (intent, language) == ("billing", "en")
    assert text == "I was charged twice for my visit on [date], my number is [phone]"
    event = AuditEvent.objects.get(resource_type="intent_samples")
    assert event.patient_ids == [str(patient.pk)]
    assert event.details == {"rows": 1, "days": 30}


def test_export_refuses_a_zero_limit(tmp_path):
    with pytest.raises(CommandError):
        call_command("export_intent_samples", "--output", str(tmp_path / "x"), "--limit", "0")
