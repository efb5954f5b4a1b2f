"""The client's address behind TRUSTED_PROXY_COUNT proxies: read from the right of
X-Forwarded-For, so what a client writes there itself is never taken."""

import pytest
from axes.helpers import get_client_ip_address
from django.test import RequestFactory

from compliance.models import AuditEvent
from compliance.services import audit_record
from contactcenter.client_address import client_address

PROXY = "172.18.0.5"


def _request(remote, forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "client"),
    [
        # No proxy of ours: the header is the client's own words and is ignored.
        (0, "203.0.113.9", None, "203.0.113.9"),
        (0, "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # The compose proxy alone.
        (1, PROXY, "203.0.113.9", "203.0.113.9"),
        (1, PROXY, "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        # A balancer in front of the compose proxy.
        (2, PROXY, "203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, PROXY, "198.51.100.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        # A proxy that did not append: the nearest address there is.
        (2, PROXY, "203.0.113.9", "203.0.113.9"),
        (1, PROXY, None, PROXY),
        # IPv6, and a header entry that is not an address.
        (1, PROXY, "2001:db8::7", "2001:db8::7"),
        (1, PROXY, "unknown", None),
    ],
)
def test_client_is_the_entry_before_the_trusted_proxies(
    settings, proxies, remote, forwarded, client
):
    settings.TRUSTED_PROXY_COUNT = proxies

    assert client_address(_request(remote, forwarded)) == client


@pytest.mark.django_db
def test_lockout_throttling_and_audit_name_the_same_address(settings):
    # Lockout and throttling read it through axes; the audit row calls the
    # resolver axes is configured with directly.
    settings.TRUSTED_PROXY_COUNT = 1
    request = _request(PROXY, "198.51.100.1, 203.0.113.9")

    event = audit_record(action="read", request=request)

    assert settings.AXES_CLIENT_IP_CALLABLE == "contactcenter.client_address.client_address"
    assert get_client_ip_address(request) == "203.0.113.9"
    assert AuditEvent.objects.get(pk=event.pk).source_ip == "203.0.113.9"
