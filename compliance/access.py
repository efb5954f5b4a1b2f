"""The access rule to PHI, decided once: which patients and conversations a user
may see.

    A staff user sees a record when its team's group holds the record's
    django-guardian grant and the user is in that group (the record is their
    team's), or when the user holds an unexpired break-glass grant for the
    record's patient. An integration (API key) sees its own team's records when
    the key is bound to a team, and the practice's otherwise: its scopes decide
    what it may do. Superusers and global permissions grant nothing here.

Every path applies it through `records_visible_to()` (patients_visible_to,
conversations_visible_to, and what is built on them: the API, the admin, the
escalation lists, the workspace, exports). The two other forms are derived from
it, not written again:

- `visible_sql()` compiles the same QuerySet into a SQL condition for the
  hand-written timeline statement.
- `team_ids_of()` is the rule's team half as a list of team ids, for the inbox
  (the only form that lets PostgreSQL walk its partial index team by team). It
  equals the grant form because the grants follow the team: a patient's and a
  conversation's grant is written to its team's group when it is created and
  moved with it by the one service that changes its team (patients.services,
  channels_app.services), in the same transaction.
  tests/compliance/test_access_matrix.py checks every path against the rule.

compliance knows patients and conversations by id only: the caller passes its
queryset, grant model and the name of the patient column.
"""

from django.contrib.auth.models import Permission
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from compliance.models import BreakGlassGrant
from contactcenter.auth import ApiClientPrincipal
from contactcenter.models import Team


def _is_staff_user(user):
    return (
        user is not None
        and not isinstance(user, ApiClientPrincipal)
        and user.is_authenticated
        and user.is_active
    )


def records_visible_to(user, *, queryset, perm_model, codename, patient_field, team_field="team"):
    """The part of `queryset` the user may see, as one SQL query (EXISTS over the
    direct-FK grant table and the break-glass grants), never a per-row check.
    `patient_field` names the patient's id column of the records ("pk" for
    patients themselves)."""
    if isinstance(user, ApiClientPrincipal):
        team_id = user.client.team_id
        return queryset.filter(**{f"{team_field}_id": team_id}) if team_id else queryset
    if not _is_staff_user(user):
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
    # Compared with the clock in every query, so access ends the second the grant
    # expires, with nothing to revoke.
    broken_glass = BreakGlassGrant.objects.filter(
        user_id=user.pk, patient_id=OuterRef(patient_field), expires_at__gt=timezone.now()
    )
    return queryset.filter(Q(Exists(granted)) | Q(Exists(broken_glass)))


def visible_sql(queryset):
    """The condition "this QuerySet has a row" as (sql, params) for a hand-written
    statement: `records_visible_to(...).filter(pk=...)` compiled by Django, so the
    statement applies the rule as the ORM writes it. A reach into Django's
    internals: `Query.sql_with_params()` is not documented API, but it is the one
    way to get a QuerySet's statement with its params adapted for the database;
    a Django upgrade that changed it fails the timeline rows of the access-matrix
    test."""
    inner, params = queryset.values("pk").query.sql_with_params()
    return f"EXISTS ({inner})", list(params)


def team_ids_of(user):
    """The ids of the teams whose records the user sees by the rule's team half
    (see the module docstring), read once per request and kept on the user
    object; None for an integration of the whole practice."""
    if isinstance(user, ApiClientPrincipal):
        return [user.client.team_id] if user.client.team_id else None
    if not _is_staff_user(user):
        return []
    cached = getattr(user, "_team_ids_cache", None)
    if cached is None:
        cached = list(Team.objects.filter(group__user=user).values_list("pk", flat=True))
        user._team_ids_cache = cached
    return cached
