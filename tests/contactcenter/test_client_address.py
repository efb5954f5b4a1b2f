"""The client's address behind TRUSTED_PROXY_COUNT proxies: read from the right of
X-Forwarded-For, so what a client writes there itself is never taken."""

import pytest
from axes.helpers import get_client_ip_address
from django.test import RequestFactory

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


def test_lockout_throttling_and_audit_read_it_through_axes(settings):
    settings.TRUSTED_PROXY_COUNT = 1

    assert get_client_ip_address(_request(PROXY, "198.51.100.1, 203.0.113.9")) == "203.0.113.9"
