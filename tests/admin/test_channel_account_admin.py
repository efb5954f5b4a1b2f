"""The admin's channel-account form applies the rules of the admin-role API and of
`manage.py create_channel_account` (channels_app.services.channel_account_validate),
writes through the same services, and never shows a stored secret."""

import re

import pytest

from channels_app.models import ChannelAccount, ImapCursor
from contactcenter import roles
from patients.models import Channel
from tests.factories import TeamFactory, make_staff

pytestmark = pytest.mark.django_db

ADD = "/admin/channels_app/channelaccount/add/"
SECRET = "imap-password-that-must-not-show"


@pytest.fixture
def team():
    return TeamFactory(name="Front desk")


@pytest.fixture
def admin_client(client):
    client.force_login(make_staff("config-admin", role=roles.ADMIN))
    return client


def _form_data(client, url, team, **fields):
    """The fields as the admin page posts them, with the empty management form of
    any inline the page shows (read from the page itself)."""
    page = client.get(url).content.decode()
    data = {
        "kind": Channel.SMS,
        "name": "Main line",
        "address": "+14155550100",
        "team": str(team.pk),
        "help_text": "",
        "greeting": "",
        "greeting_es": "",
        "open_hours": "",
        "active": "on",
        "imap_host": "",
        "imap_port": "993",
        "imap_username": "",
        "imap_use_ssl": "on",
        "imap_folder": "INBOX",
        "new_secret": "",
    }
    for prefix in set(re.findall(r'name="([\w-]+)-TOTAL_FORMS"', page)):
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    data.update(fields)
    return data


@pytest.mark.parametrize("address", ["415-555-0100", "+1 415 555 0100", "+1415555010"])
def test_a_number_not_in_e164_form_shows_the_apis_error_and_writes_nothing(
    admin_client, team, address
):
    response = admin_client.post(ADD, _form_data(admin_client, ADD, team, address=address))

    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert "address" in errors
    assert any("E.164" in message or "number" in message for message in errors["address"])
    assert "E.164" in response.content.decode() or "number" in response.content.decode()
    assert not ChannelAccount.objects.exists()


def test_a_second_account_with_the_same_address_is_refused_as_by_the_api(admin_client, team):
    ChannelAccount.objects.create(
        kind=Channel.SMS, name="Existing", address="+14155550100", team=team
    )

    response = admin_client.post(ADD, _form_data(admin_client, ADD, team, name="Again"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["address"] == [
        "There is already a sms account with this address."
    ]
    assert ChannelAccount.objects.count() == 1


def test_imap_settings_on_a_number_and_a_mailbox_without_password_are_refused(admin_client, team):
    on_a_number = admin_client.post(
        ADD, _form_data(admin_client, ADD, team, imap_host="imap.example.org")
    )
    without_password = admin_client.post(
        ADD,
        _form_data(
            admin_client,
            ADD,
            team,
            kind=Channel.EMAIL,
            address="front@clinic.example",
            imap_host="imap.example.org",
        ),
    )

    assert "imap_host" in on_a_number.context["adminform"].form.errors
    assert "new_secret" in without_password.context["adminform"].form.errors
    assert not ChannelAccount.objects.exists()


def test_the_secret_is_stored_but_never_rendered_and_an_empty_field_keeps_it(admin_client, team):
    created = admin_client.post(
        ADD,
        _form_data(
            admin_client,
            ADD,
            team,
            kind=Channel.EMAIL,
            name="Front desk mail",
            address="Front@Clinic.Example",
            imap_host="imap.example.org",
            new_secret=SECRET,
        ),
    )
    assert created.status_code == 302, created.context["adminform"].form.errors
    account = ChannelAccount.objects.get()
    assert account.secret == SECRET
    assert account.address == "front@clinic.example"  # normalised as the API does
    ImapCursor.objects.create(account=account, uidvalidity=1, last_uid=7)
    change = f"/admin/channels_app/channelaccount/{account.pk}/change/"

    page = admin_client.get(change).content.decode()

    assert SECRET not in page
    [secret_input] = re.findall(r"<input[^>]*name=\"new_secret\"[^>]*>", page)
    assert 'type="password"' in secret_input
    assert "value=" not in secret_input

    kept = admin_client.post(
        change,
        _form_data(
            admin_client,
            change,
            team,
            kind=Channel.EMAIL,
            name="Renamed",
            address="front@clinic.example",
            imap_host="imap.example.org",
        ),
    )
    assert kept.status_code == 302, kept.context["adminform"].form.errors
    account.refresh_from_db()
    assert (account.name, account.secret) == ("Renamed", SECRET)
    assert ImapCursor.objects.filter(account=account).exists()

    moved = admin_client.post(
        change,
        _form_data(
            admin_client,
            change,
            team,
            kind=Channel.EMAIL,
            name="Renamed",
            address="front@clinic.example",
            imap_host="imap2.example.org",
        ),
    )
    assert moved.status_code == 302
    # A new host is a new mailbox: the service starts it from its first message.
    assert not ImapCursor.objects.filter(account=account).exists()
    assert SECRET not in admin_client.get(change).content.decode()


def test_the_kind_cannot_change_in_the_admin_either(admin_client, team):
    account = ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line", address="+14155550100", team=team
    )
    change = f"/admin/channels_app/channelaccount/{account.pk}/change/"

    response = admin_client.post(change, _form_data(admin_client, change, team, kind="voice"))

    assert response.status_code == 200
    assert "kind" in response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.kind == Channel.SMS
