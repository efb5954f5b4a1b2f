"""Channel accounts without the admin: the admin-role API and
`manage.py create_channel_account`, under one set of rules; secrets write-only;
the IMAP server checked on demand against a loopback IMAP server."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from channels_app.models import ChannelAccount, ImapCursor
from compliance.models import AuditEvent
from contactcenter import roles
from patients.models import Channel
from tests.factories import TeamFactory, make_staff, token_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/channel-accounts/"


@pytest.fixture
def team():
    return TeamFactory(name="Front desk")


@pytest.fixture
def admin_headers():
    return token_for(make_staff("config-admin", role=roles.ADMIN))


def _post(client, headers, payload):
    return client.post(URL, json.dumps(payload), content_type="application/json", **headers)


def test_an_admin_adds_an_sms_number_and_its_secret_never_comes_back(client, admin_headers, team):
    response = _post(
        client,
        admin_headers,
        {"kind": "sms", "name": "Main line", "address": "+14155550100", "team": team.pk},
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["address"] == "+14155550100" and body["has_secret"] is False
    assert "secret" not in body
    assert AuditEvent.objects.filter(
        resource_type="channel_account", resource_id=body["id"], action="create"
    ).exists()


@pytest.mark.parametrize("address", ["4155550100", "+1 415 555 0100", "+1415555", "+0123"])
def test_a_number_not_in_e164_form_is_refused(client, admin_headers, team, address):
    response = _post(
        client,
        admin_headers,
        {"kind": "voice", "name": "Line", "address": address, "team": team.pk},
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"]["address"]
    assert not ChannelAccount.objects.exists()


def test_a_mailbox_with_imap_settings_keeps_its_password_write_only(client, admin_headers, team):
    response = _post(
        client,
        admin_headers,
        {
            "kind": "email",
            "name": "Care",
            "address": "Care@Practice.test",
            "team": team.pk,
            "imap_host": "imap.practice.test",
            "imap_port": 993,
            "secret": "mailbox-password",
        },
    )
    account = ChannelAccount.objects.get()
    listed = client.get(URL, **admin_headers)

    assert response.status_code == 201, response.json()
    assert account.address == "care@practice.test" and account.secret == "mailbox-password"
    assert "mailbox-password" not in response.content.decode()
    assert "mailbox-password" not in listed.content.decode()
    assert listed.json()["results"][0]["has_secret"] is True


def test_an_imap_mailbox_without_a_password_or_an_sms_number_with_imap_is_refused(
    client, admin_headers, team
):
    no_password = _post(
        client,
        admin_headers,
        {
            "kind": "email",
            "name": "Care",
            "address": "care@practice.test",
            "team": team.pk,
            "imap_host": "imap.practice.test",
        },
    )
    sms_with_imap = _post(
        client,
        admin_headers,
        {
            "kind": "sms",
            "name": "Line",
            "address": "+14155550100",
            "team": team.pk,
            "imap_host": "imap.practice.test",
        },
    )

    assert no_password.status_code == 400
    assert "secret" in no_password.json()["error"]["details"]
    assert sms_with_imap.status_code == 400
    assert "imap_host" in sms_with_imap.json()["error"]["details"]


def test_a_second_account_with_the_same_address_is_refused(client, admin_headers, team):
    payload = {"kind": "sms", "name": "Line", "address": "+14155550100", "team": team.pk}
    _post(client, admin_headers, payload)

    response = _post(client, admin_headers, {**payload, "name": "Again"})

    assert response.status_code == 400
    assert "already" in response.json()["error"]["details"]["address"][0]


def test_an_update_without_a_secret_keeps_it_and_a_new_host_resets_the_cursor(
    client, admin_headers, team
):
    account = ChannelAccount.objects.create(
        kind=Channel.EMAIL,
        name="Care",
        address="care@practice.test",
        team=team,
        secret="kept",
        imap_host="old.practice.test",
    )
    ImapCursor.objects.create(account=account, uidvalidity=7, last_uid=42)

    response = client.patch(
        f"{URL}{account.pk}/",
        json.dumps({"imap_host": "new.practice.test", "secret": ""}),
        content_type="application/json",
        **admin_headers,
    )
    account.refresh_from_db()

    assert response.status_code == 200, response.json()
    assert account.secret == "kept" and account.imap_host == "new.practice.test"
    assert not ImapCursor.objects.filter(account=account).exists()


def test_the_kind_cannot_change(client, admin_headers, team):
    account = ChannelAccount.objects.create(
        kind=Channel.SMS, name="Line", address="+14155550100", team=team
    )

    response = client.patch(
        f"{URL}{account.pk}/",
        json.dumps({"kind": "voice"}),
        content_type="application/json",
        **admin_headers,
    )

    assert response.status_code == 400
    assert "kind" in response.json()["error"]["details"]


@pytest.mark.parametrize("role", [roles.AGENT, roles.SUPERVISOR, roles.COMPLIANCE])
def test_only_the_admin_role_manages_channel_accounts(client, team, role):
    headers = token_for(make_staff(f"not-admin-{role}", role=role, teams=[team]))

    assert client.get(URL, **headers).status_code == 403
    assert (
        _post(
            client,
            headers,
            {"kind": "sms", "name": "L", "address": "+14155550100", "team": team.pk},
        ).status_code
        == 403
    )


def test_the_imap_check_logs_in_on_demand(client, admin_headers, team, imap_stub):
    imap_stub.add_user("care@practice.test", "right-password")
    account = ChannelAccount.objects.create(
        kind=Channel.EMAIL,
        name="Care",
        address="care@practice.test",
        team=team,
        secret="wrong-password",
        imap_host="127.0.0.1",
        imap_port=imap_stub.port,
        imap_use_ssl=False,
    )
    check = f"{URL}{account.pk}/check-imap/"

    refused = client.post(check, **admin_headers)
    account.secret = "right-password"
    account.save()
    accepted = client.post(check, **admin_headers)

    assert refused.status_code == 200
    assert refused.json()["reachable"] is False and "refused the login" in refused.json()["error"]
    assert accepted.json() == {"reachable": True, "error": ""}
    assert imap_stub.commands_named("EXAMINE")


def test_the_imap_check_of_an_sms_number_is_a_clear_400(client, admin_headers, team):
    account = ChannelAccount.objects.create(
        kind=Channel.SMS, name="Line", address="+14155550100", team=team
    )

    response = client.post(f"{URL}{account.pk}/check-imap/", **admin_headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_an_imap_mailbox"


def test_the_command_adds_a_mailbox_with_its_password_from_the_environment(
    team, imap_stub, monkeypatch
):
    imap_stub.add_user("care@practice.test", "s3cret")
    monkeypatch.setenv("CARE_MAILBOX_PASSWORD", "s3cret")
    out = io.StringIO()

    call_command(
        "create_channel_account",
        "email",
        "care@practice.test",
        "--name=Care",
        "--team=Front desk",
        "--secret-env=CARE_MAILBOX_PASSWORD",
        "--imap-host=127.0.0.1",
        f"--imap-port={imap_stub.port}",
        "--imap-no-ssl",
        "--check-imap",
        stdout=out,
    )

    account = ChannelAccount.objects.get()
    assert account.secret == "s3cret" and not account.imap_use_ssl
    assert "s3cret" not in out.getvalue()
    assert "accepted the login" in out.getvalue()


def test_the_command_applies_the_api_rules(team):
    with pytest.raises(CommandError, match=r"E\.164"):
        call_command(
            "create_channel_account", "sms", "555-0100", "--name=Line", "--team=Front desk"
        )
    with pytest.raises(CommandError, match="No team"):
        call_command("create_channel_account", "sms", "+14155550100", "--name=L", "--team=Nope")
