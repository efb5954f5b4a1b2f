"""Staff roles are Django groups with these names; a user holds one role."""

AGENT = "agent"
SUPERVISOR = "supervisor"
CLINICIAN = "clinician"
COMPLIANCE = "compliance"
ADMIN = "admin"
# Not a group: the role an API key acts in.
INTEGRATION = "integration"

ROLES = (AGENT, SUPERVISOR, CLINICIAN, COMPLIANCE, ADMIN)
# Order of precedence when a user is (unusually) in several role groups.
_PRECEDENCE = (ADMIN, COMPLIANCE, SUPERVISOR, CLINICIAN, AGENT)


def role_of(user):
    """The user's role name, or "" for anonymous users and users without a role.

    Reads the groups prefetched on the user when present, so list views that
    prefetch `groups` do not query once per row.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    if getattr(user, "is_api_client", False):
        return INTEGRATION
    cached = getattr(user, "_role_cache", None)
    if cached is not None:
        return cached
    names = {group.name for group in user.groups.all()}
    role = next((name for name in _PRECEDENCE if name in names), "")
    user._role_cache = role
    return role


def has_role(user, *roles):
    return role_of(user) in roles
