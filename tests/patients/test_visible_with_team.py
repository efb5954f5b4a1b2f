"""patient_visible_with_team: the portal's read of the patient it is given, a fixed
statement with the access rule compiled once per kind of principal, must answer as
the QuerySet it stands for does, for every kind of principal."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contactcenter.auth import ApiClientPrincipal
from patients.selectors import patient_visible_with_team, patients_visible_to
from tests.factories import make_api_key, make_patient, make_staff

pytestmark = pytest.mark.django_db


def through_queryset(user, patient_id):
    return patients_visible_to(user).select_related("team").filter(pk=patient_id).first()


def test_it_answers_as_the_queryset_for_every_principal(south, north):
    ours = make_patient(team=south, phones=("+14155550161",))
    theirs = make_patient(team=north, phones=("+14155550162",))
    principals = {
        "agent of the team": make_staff(teams=[south]),
        "agent of another team": make_staff(teams=[north]),
        "key of the team": ApiClientPrincipal(make_api_key(scopes=["portal:write"], team=south)[1]),
        "key of another team": ApiClientPrincipal(
            make_api_key(scopes=["portal:write"], team=north)[1]
        ),
        "key of the practice": ApiClientPrincipal(make_api_key(scopes=["portal:write"])[1]),
    }
    seen = {}
    for label, user in principals.items():
        for patient in (ours, theirs):
            found = patient_visible_with_team(user, patient_id=patient.pk)
            assert found == through_queryset(user, patient.pk), (label, patient)
            seen[(label, patient.pk)] = found is not None
        assert patient_visible_with_team(user, patient_id=uuid.uuid4()) is None
        assert patient_visible_with_team(user, patient_id="not-a-uuid") is None
    # The matrix is not trivially empty or full.
    assert seen[("key of the team", ours.pk)] and not seen[("key of the team", theirs.pk)]
    assert seen[("key of the practice", theirs.pk)]
    assert not seen[("agent of another team", ours.pk)]


def test_the_team_comes_with_the_patient_in_one_statement(south):
    patient = make_patient(team=south, phones=("+14155550163",))
    user = ApiClientPrincipal(make_api_key(scopes=["portal:write"], team=south)[1])
    patient_visible_with_team(user, patient_id=patient.pk)  # the rule compiled once

    with CaptureQueriesContext(connection) as queries:
        found = patient_visible_with_team(user, patient_id=patient.pk)
        assert found.team == south
    assert len(queries) == 1
