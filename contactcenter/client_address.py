"""The client's address, seen through TRUSTED_PROXY_COUNT proxies of our own.

Each proxy appends the address it received the request from to X-Forwarded-For,
so the chain is X-Forwarded-For's entries followed by REMOTE_ADDR (the last proxy),
and the client is the entry just before the trusted proxies. Counting from the
right is what makes it unforgeable: whatever a client writes into X-Forwarded-For
itself lands to the left of what our proxies append, and is never read. With no
trusted proxy the header is ignored and REMOTE_ADDR is the client.

django-axes calls this (AXES_CLIENT_IP_CALLABLE) for lockout, and throttling and
the audit trail read the address through axes, so all three agree.
"""

import ipaddress

from django.conf import settings


def client_address(request):
    """The client's IP address as a string, or None when it is not one."""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    chain = [remote]
    if trusted:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        chain = [part.strip() for part in forwarded.split(",") if part.strip()] + chain
    # Fewer entries than proxies means a proxy did not append: the leftmost is the
    # nearest to the client we have.
    candidate = chain[-(trusted + 1)] if len(chain) > trusted else chain[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
