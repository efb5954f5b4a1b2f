from rest_framework.permissions import BasePermission

from contactcenter import roles


class ScopedAccess(BasePermission):
    """Staff pass (their access is decided by role and object permissions); an
    integration needs the scope the view declares for the HTTP method:
    `required_scopes = {"GET": "patients:read", "POST": "patients:write"}`.
    A view that declares no scope for a method is closed to integrations."""

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request, view):
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if not getattr(user, "is_api_client", False):
            return True
        scope = getattr(view, "required_scopes", {}).get(request.method)
        if scope is None and request.method in ("HEAD", "OPTIONS"):
            scope = getattr(view, "required_scopes", {}).get("GET")
        return scope is not None and user.client.has_scope(scope)


class StaffOnly(BasePermission):
    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and not getattr(user, "is_api_client", False))


def role_permission(*allowed_roles):
    class HasRole(BasePermission):
        message = "Your role does not allow this."

        def has_permission(self, request, view):
            return roles.has_role(request.user, *allowed_roles)

    HasRole.__name__ = f"HasRole_{'_'.join(allowed_roles)}"
    return HasRole
