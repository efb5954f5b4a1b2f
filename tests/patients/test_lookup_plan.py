"""The blind-index lookup must be an index scan, never a scan that would decrypt or
read the whole table. 10k patients are enough for the planner to choose: without the
index the same lookup is a sequential scan at this size already (the large volumes
are bench/inbox_timeline.py's, at 100k patients)."""

import pytest
from django.db import connection

from patients.selectors import patient_list
from tests.factories import make_patient

pytestmark = pytest.mark.django_db


def _bulk_fill(team, count):
    # Plain SQL fill: the plan depends on table size and statistics, not on the
    # ciphertext, so filler rows carry placeholder values and random-looking indexes.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO patients_patient (id, mrn, mrn_index, given_name, family_name, sex,
                preferred_channel, preferred_language, time_zone, team_id, needs_interpreter,
                low_literacy, hearing_impaired, vip, active, created_at, updated_at)
            SELECT md5(i::text)::uuid, 'x', md5('mrn' || i) || md5('m' || i), 'x', 'x', '',
                'sms', 'en', 'UTC', %s, false, false, false, false, true, now(), now()
            FROM generate_series(1, %s) AS i
            """,
            [team.pk, count],
        )
        cursor.execute(
            """
            INSERT INTO patients_contactpoint (id, patient_id, kind, value, value_index, verified,
                preferred, sms_opted_out, sms_consent_source, created_at)
            SELECT md5('cp' || i)::uuid, md5(i::text)::uuid, 'phone', 'x',
                md5('ph' || i) || md5('p' || i), false, false, false, '', now()
            FROM generate_series(1, %s) AS i
            """,
            [count],
        )
        cursor.execute("ANALYZE patients_patient")
        cursor.execute("ANALYZE patients_contactpoint")


def test_phone_lookup_uses_the_blind_index_at_10k_patients(north, member):
    _bulk_fill(north, 10_000)
    target = make_patient(team=north, phones=["+14155550123"])

    queryset = patient_list(user=member, phone="415-555-0123")
    plan = queryset.explain()

    assert [p.pk for p in queryset] == [target.pk]
    assert "contactpoint_value_index" in plan or "value_index" in plan
    assert "Seq Scan on patients_contactpoint" not in plan
