import pytest
from django.core.management import call_command

from channels_app.models import Conversation, Interaction
from patients.models import Patient

pytestmark = pytest.mark.django_db


def test_demo_data_loads_and_a_second_run_changes_nothing():
    call_command("load_demo")
    counts = (Patient.objects.count(), Conversation.objects.count(), Interaction.objects.count())

    call_command("load_demo")

    assert counts[0] == 6
    assert counts[1] >= 2
    assert (
        Patient.objects.count(),
        Conversation.objects.count(),
        Interaction.objects.count(),
    ) == counts
    # The shared family line stays unmatched: staff pick the patient.
    assert Conversation.objects.filter(patient__isnull=True).count() == 1
