"""SMART v2 system scopes, and how an API client's scopes map onto them.

An API client's own scopes (contactcenter.models.ApiClient.Scope) are the one
record of what an integration may do; the FHIR interface reads them as SMART
scopes, so an API key and a SMART token of the same client reach the same data.
"""

import re
from dataclasses import dataclass

from contactcenter.models import ApiClient

PERMISSION_ORDER = "cruds"

# What each API client scope allows through FHIR, per resource type.
CLIENT_SCOPE_GRANTS = {
    ApiClient.Scope.PATIENTS_READ: {
        "Patient": "rs",
        "Appointment": "rs",
        "CommunicationRequest": "rs",
        "Consent": "rs",
    },
    ApiClient.Scope.PATIENTS_WRITE: {"Patient": "cu"},
    ApiClient.Scope.APPOINTMENTS_WRITE: {"Appointment": "cu"},
    # The timeline in the REST API carries message bodies: so does this scope.
    ApiClient.Scope.TIMELINE_READ: {"Communication": "rs"},
    # Communications without their content (medium, times, parties).
    ApiClient.Scope.COMMUNICATIONS_READ: {"Communication": "rs"},
    ApiClient.Scope.AUDIT_READ: {"AuditEvent": "rs"},
}
# The client scopes that let a Communication carry its payload.
CONTENT_SCOPES = frozenset({ApiClient.Scope.TIMELINE_READ})

_SCOPE = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>[cruds]+|read|write|\*)$")
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}


class InvalidScope(ValueError):
    pass


@dataclass(frozen=True)
class Grant:
    """Permissions per resource type ({"Patient": "rs"}), and whether message
    content may be shown."""

    permissions: dict
    content: bool = False

    def allows(self, resource_type, permission):
        return permission in self.permissions.get(resource_type, "")

    def scope_strings(self):
        return sorted(f"system/{rtype}.{perms}" for rtype, perms in self.permissions.items())


def _ordered(letters):
    return "".join(p for p in PERMISSION_ORDER if p in letters)


def grant_of_client(client):
    """Everything the client's own scopes allow."""
    permissions = {}
    for scope in client.scopes:
        for rtype, letters in CLIENT_SCOPE_GRANTS.get(scope, {}).items():
            permissions[rtype] = _ordered(set(permissions.get(rtype, "")) | set(letters))
    return Grant(permissions=permissions, content=bool(CONTENT_SCOPES & set(client.scopes)))


def parse_requested(scope_text, *, known_types):
    """The permissions asked for in a token request's `scope` (space-separated
    SMART system scopes; v1 `.read`/`.write` and `*` accepted). Raises
    InvalidScope naming the first one that is not a system scope."""
    requested = {}
    for item in scope_text.split():
        match = _SCOPE.match(item)
        if match is None:
            raise InvalidScope(f"{item!r} is not a SMART system scope (system/Type.rs).")
        perms = match["perms"]
        letters = _V1_PERMISSIONS.get(perms, perms)
        if _ordered(letters) != letters:
            raise InvalidScope(f"{item!r}: permissions go in the order c, r, u, d, s.")
        types = known_types if match["type"] == "*" else [match["type"]]
        for rtype in types:
            requested[rtype] = _ordered(set(requested.get(rtype, "")) | set(letters))
    if not requested:
        raise InvalidScope("Ask for at least one scope.")
    return requested


def narrow(grant, requested):
    """The part of `requested` that `grant` allows (a server may grant less than
    asked; the token response says what was granted)."""
    permissions = {}
    for rtype, letters in requested.items():
        allowed = _ordered(set(letters) & set(grant.permissions.get(rtype, "")))
        if allowed:
            permissions[rtype] = allowed
    content = grant.content and "Communication" in permissions
    return Grant(permissions=permissions, content=content)
