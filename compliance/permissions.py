from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from contactcenter import roles


def role_or_404(*allowed_roles):
    """Like contactcenter.permissions.role_permission, but a signed-in caller of
    another role gets 404: to them the endpoint does not exist, and a 403 would
    tell them it does. Anonymous callers still get 401, so a missing token reads
    as what it is."""

    class HasRoleOr404(BasePermission):
        def has_permission(self, request, view):
            user = request.user
            if not user or not user.is_authenticated:
                return False
            if roles.has_role(user, *allowed_roles):
                return True
            raise NotFound()

    HasRoleOr404.__name__ = f"HasRoleOr404_{'_'.join(allowed_roles)}"
    return HasRoleOr404
