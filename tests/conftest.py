import importlib

import pytest
from celery.contrib.testing.worker import start_worker
from django.apps import apps
from django.conf import settings
from django.test import Client

from config.celery import app as celery_app
from contactcenter import roles
from tests import db_template, fast_flush
from tests.factories import make_api_key, make_patient, make_staff

# Transactional tests end with a cheaper flush, to the same database as flush leaves.
fast_flush.install()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings, request):
    """The test database is made from a migrated template when there is one
    (tests/db_template.py); not with --reuse-db or --no-migrations."""
    if request.config.getvalue("reuse_db") or request.config.getvalue("nomigrations"):
        yield None
        return
    template = db_template.Template()
    try:
        yield template
    finally:
        template.release()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_modify_db_settings, django_db_blocker):
    template = django_db_modify_db_settings
    if template is not None:
        from django.db import connection

        with django_db_blocker.unblock():
            template.keep(connection.settings_dict["NAME"])
        template.release()


@pytest.fixture(autouse=True)
def forget_process_copies():
    """Channel accounts, escalation rules, SLA policies and FHIR subscriptions are
    kept per process (contactcenter.process_copy); a test's rows roll back with it,
    so no test sees an earlier test's."""
    from contactcenter import process_copy

    process_copy.forget_all()
    yield
    process_copy.forget_all()


@pytest.fixture(autouse=True)
def empty_inbound_list():
    """The inbound messages' list and drainer slots live in Redis across tests
    (channels_app.inbound_queue): a slot an earlier test took, for a drain task no
    worker of its ran, would keep this test's message from starting one."""
    from channels_app import inbound_queue

    if inbound_queue.uses_list():
        drainers = range(1, settings.INBOUND_DRAINERS + 1)
        inbound_queue.client().connection.delete(
            inbound_queue.list_key(), *(inbound_queue.slot_key(n) for n in drainers)
        )


@pytest.fixture(autouse=True)
def audit_checkpoints(settings, tmp_path):
    """Each test's own checkpoint file: the database is emptied between tests, and
    a checkpoint left by an earlier test would name a chain this one never had."""
    path = tmp_path / "audit-checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_SINK = f"file://{path}"
    return path


# The data migrations that install what a new database ships with.
_SHIPPED_DEFAULTS = (
    ("escalation.migrations.0002_default_rules_and_sla", "add_defaults"),
    ("reminders.migrations.0002_default_policy", "create_default_policy"),
)


@pytest.fixture
def shipped_defaults(transactional_db):
    """The rules, SLA policies and reminder policy a migrated database starts with.
    A transactional test empties every table when it ends, data migrations' rows
    included, so a test that relies on them installs them again (both functions add
    only what is missing): without this, such a test passes alone and fails after any
    transactional test in the same process."""
    for module, function in _SHIPPED_DEFAULTS:
        getattr(importlib.import_module(module), function)(apps, None)


@pytest.fixture
def celery_worker_real(transactional_db):
    """A real Celery worker, in this process, consuming every queue from the real
    Redis broker (with this xdist worker's key prefix). Tests using it commit for
    real (transactional_db), since the worker reads through its own connection."""
    celery_app.conf.task_queues  # noqa: B018 - forces queue declaration
    # The worker notices it must stop between two polls of Redis (BRPOP, one second
    # by default); polling every 0.1 s ends each test's worker about a second sooner.
    # The worker's connection reads the option when it starts; it is put back after.
    options = celery_app.conf.broker_transport_options
    celery_app.conf.broker_transport_options = {**options, "polling_interval": 0.1}
    try:
        with start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=10,
            queues=["inbound", "outbound", "reminders", "escalations", "default"],
        ) as worker:
            yield worker
    finally:
        celery_app.conf.broker_transport_options = options


@pytest.fixture
def north(db):
    """Two care teams, for the "member, teammate, outsider" access tests."""
    from tests.factories import TeamFactory

    return TeamFactory(name="North")


@pytest.fixture
def south(db):
    from tests.factories import TeamFactory

    return TeamFactory(name="South")


# The three users of the access tests: a member of the patient's team, someone of
# another team, and the compliance officer (no team).


@pytest.fixture
def member(north):
    return make_staff("member", role=roles.AGENT, teams=[north])


@pytest.fixture
def outsider(south):
    return make_staff("outsider", role=roles.AGENT, teams=[south])


@pytest.fixture
def compliance_officer(db):
    return make_staff("officer", role=roles.COMPLIANCE)


@pytest.fixture
def patient(north):
    return make_patient(team=north, given_name="Grace", family_name="Hopper")


@pytest.fixture
def api_key_headers(db):
    """Authorization headers of a new API key with the given scopes."""

    def build(*scopes, team=None):
        key, _ = make_api_key(scopes=list(scopes), team=team)
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    return build


@pytest.fixture
def api_client_raw():
    """A client that returns 500 responses instead of raising the exception."""
    return Client(raise_request_exception=False)


from tests.stubs.fixtures import (  # noqa: E402, F401
    imap_stub,
    smtp_server,
    smtp_settings,
    twilio_stub,
    twilio_stub_settings,
)
