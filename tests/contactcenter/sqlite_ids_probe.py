"""Run by test_ids_are_canonical_on_sqlite in a subprocess, with a SQLite
DATABASE_URL (the database of `make run`): prints, as JSON, the ids the inbox and
the timeline return and the status of the detail URLs built from them."""

import json
import os
import sys

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
os.environ["DATABASE_URL"] = f"sqlite:///{sys.argv[1]}"

from config.settings import test as test_settings

# The PostgreSQL session option of the test settings means nothing to SQLite.
test_settings.DATABASES["default"]["OPTIONS"].pop("options", None)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from channels_app.models import ChannelAccount, Conversation  # noqa: E402
from channels_app.services import inbound_record  # noqa: E402
from contactcenter import roles  # noqa: E402
from patients.models import Channel  # noqa: E402
from tests.factories import TeamFactory, make_patient, make_staff, token_for  # noqa: E402

call_command("migrate", verbosity=0)
team = TeamFactory(name="North")
agent = make_staff("agent", role=roles.AGENT, teams=[team])
patient = make_patient(team=team, phones=("+14155550177",))
account = ChannelAccount.objects.create(
    kind=Channel.SMS, name="Main line", address="+15005550006", team=team
)
first, second = (
    inbound_record(
        channel=Channel.SMS,
        account=account,
        address="+14155550177",
        body=body,
        provider_id="SM" + digit * 32,
        occurred_at=timezone.now(),
        source="twilio_sms",
        raw_payload="{}",
    ).interaction
    for digit, body in (("1", "Hello"), ("2", "Are you there?"))
)
# The worker's processing of a message on SQLite, as `make run`'s worker runs it: its
# hand-written reads and writes (the locked conversation, the SLA policy, the marks).
from channels_app.tasks import inbound_process  # noqa: E402
from contactcenter.models import StaffProfile  # noqa: E402
from understanding.models import IntentDecision  # noqa: E402

# Available, so routing (its hand-written read of the team's members) assigns her.
StaffProfile.objects.update_or_create(
    user=agent, defaults={"availability": StaffProfile.Availability.AVAILABLE}
)
inbound_process.run(str(first.pk))
first.refresh_from_db()
first_conversation = Conversation.objects.get(pk=first.conversation_id)
client, headers = Client(), token_for(agent)
inbox_row = client.get("/api/v1/conversations/", **headers).json()["results"][0]
timeline_row = client.get(f"/api/v1/patients/{patient.pk}/timeline/", **headers).json()["results"][
    0
]
followed = {
    "patient": client.get(f"/api/v1/patients/{inbox_row['patient']}/", **headers).status_code,
    "conversation": client.get(
        f"/api/v1/conversations/{timeline_row['conversation']}/", **headers
    ).status_code,
}
# The audit trail's patient search and access report: JSON containment has no
# lookup on SQLite, so these read the array another way there (not a 500).
officer_headers = token_for(make_staff("officer", role=roles.COMPLIANCE))
audit_search = client.get(f"/api/v1/audit-events/?patient={patient.pk}", **officer_headers)
access_report = client.get(f"/api/v1/patients/{patient.pk}/access-report/", **officer_headers)
# The intraday KPI rollup and the report over it, as `make run`'s beat runs them:
# today's closed quarters stored, the rest computed, equal to all of it computed.
import secrets  # noqa: E402
from datetime import datetime, time  # noqa: E402

from django.test import RequestFactory  # noqa: E402

from contactcenter.throttling import AddressThrottle  # noqa: E402
from reporting.selectors import kpi_report, kpi_settings, kpi_today  # noqa: E402
from reporting.services import kpi_rollup_intraday  # noqa: E402

today = kpi_today()
kpi_rollup_intraday(now=datetime.combine(today, time(23, 40), tzinfo=kpi_settings().time_zone))
rolled_report = kpi_report(since=today, until=today)
live_report = kpi_report(since=today, until=today, use_rollups=False)
# The survey page's limit (its default, 30 a minute; the test settings lift it) on
# the file cache `make run` uses without Redis.
from django.conf import settings  # noqa: E402

settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "survey": "30/minute"}
survey_request = RequestFactory().get(
    "/survey/x/", REMOTE_ADDR=f"198.51.100.{secrets.randbelow(250) + 1}"
)
survey_answers = [AddressThrottle("survey").allow_request(survey_request, None) for _ in range(31)]
print(
    json.dumps(
        {
            "kpi_partly_rolled_up": rolled_report["sources"]["partly_rolled_up_days"],
            "kpi_rolled_equals_live": {**rolled_report, "sources": None}
            == {**live_report, "sources": None},
            "survey_limit": [survey_answers.count(True), survey_answers[-1]],
            "audit_search": [
                audit_search.status_code,
                sorted({row["resource_type"] for row in audit_search.json()["results"]})
                if audit_search.status_code == 200
                else audit_search.content.decode()[:300],
            ],
            "access_report": access_report.status_code,
            "ids": [
                inbox_row["id"],
                inbox_row["patient"],
                timeline_row["id"],
                timeline_row["conversation"],
            ],
            "followed": followed,
            # The second message found the first one's conversation (the hand-written
            # look-up of the address's open thread, without FOR UPDATE here).
            "same_thread": second.conversation_id == first.conversation_id,
            "processed": first.processed_at is not None and first.sentiment is not None,
            # Written by the fixed UPDATE of the conversation and INSERT of the intent.
            "conversation_sentiment": first_conversation.sentiment_first == first.sentiment,
            "intent_stored": IntentDecision.objects.filter(interaction=first).exists(),
            "routed_to_agent": first_conversation.assignee_id == agent.pk,
        }
    )
)
