"""Object access to PHI through django-guardian's direct-FK group permissions.

Patients and conversations are granted to the group of the team that owns them;
a user sees what their teams' groups hold. Superusers and global permissions
grant nothing here: PHI querysets are never built with `with_superuser=True`.
"""

from django.contrib.auth.models import Permission
from django.db.models import Exists, OuterRef, Subquery
from guardian.shortcuts import assign_perm, remove_perm

from contactcenter.auth import ApiClientPrincipal


def grant_team_access(*, obj, team, perm):
    assign_perm(perm, team.group, obj)


def revoke_team_access(*, obj, team, perm):
    remove_perm(perm, team.group, obj)


def visible_to(*, user, queryset, perm_model, codename, team_field="team"):
    """The part of `queryset` the user may see, as one SQL query (an EXISTS over
    the direct-FK permission table), never a per-row check.

    An integration (API key) sees its own team's records when the key is bound to
    a team, and the practice's otherwise: its scopes decide what it may do."""
    if isinstance(user, ApiClientPrincipal):
        team_id = user.client.team_id
        return queryset.filter(**{f"{team_field}_id": team_id}) if team_id else queryset
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    # The permission id and the user's group ids as sub-selects PostgreSQL runs
    # once: joining auth_permission and auth_group into the EXISTS made it
    # misestimate the grants by three orders of magnitude and read every grant of
    # the team (bench/inbox_timeline.py).
    target = perm_model._meta.get_field("content_object").related_model
    permission = Permission.objects.filter(
        content_type__app_label=target._meta.app_label,
        content_type__model=target._meta.model_name,
        codename=codename,
    ).values("pk")[:1]
    user_groups = user.groups.through.objects.filter(user_id=user.pk).values("group_id")
    granted = perm_model.objects.filter(
        content_object=OuterRef("pk"),
        permission_id=Subquery(permission),
        group_id__in=user_groups,
    )
    return queryset.filter(Exists(granted))
