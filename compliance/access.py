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
  hand-written timeline statement; `visible_sql_for()` does it once per process
  and kind of principal, and fills in the request's values.
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

import functools
import uuid
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from compliance.models import BreakGlassGrant
from contactcenter import sql
from contactcenter.auth import ApiClientPrincipal
from contactcenter.models import ApiClient, Team


def _is_staff_user(user):
    return (
        user is not None
        and not isinstance(user, ApiClientPrincipal)
        and user.is_authenticated
        and user.is_active
    )


def records_visible_to(
    user, *, queryset, perm_model, codename, patient_field, team_field="team", now=None
):
    """The part of `queryset` the user may see, as one SQL query (EXISTS over the
    direct-FK grant table and the break-glass grants), never a per-row check.
    `patient_field` names the patient's id column of the records ("pk" for
    patients themselves); `now` is the clock break-glass grants are compared with
    (the current time unless given)."""
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
        user_id=user.pk,
        patient_id=OuterRef(patient_field),
        expires_at__gt=timezone.now() if now is None else now,
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


# Values no principal, record or clock has: the rule's statement is compiled once
# with them in place of the request's, and they are found again among its
# parameters, in the form the database was given them (no user or team has a
# negative id).
_ANY_USER_ID = -7_000_001
_ANY_TEAM_ID = -7_000_002
_ANY_TIME = datetime(1901, 1, 1, 0, 0, 0, 7, tzinfo=UTC)
_ANY_UUID = uuid.UUID("00000000-0000-4000-8000-0000a11ce55e")
_ANY_INT = -7_000_003


def _kind_of(user):
    """The kind of principal, which alone decides the statement's shape; None for
    one that sees nothing."""
    if isinstance(user, ApiClientPrincipal):
        return "team_client" if user.client.team_id else "practice_client"
    return "staff" if _is_staff_user(user) else None


def _stand_in(kind):
    if kind == "staff":
        return get_user_model()(pk=_ANY_USER_ID, is_active=True)
    team_id = _ANY_TEAM_ID if kind == "team_client" else None
    return ApiClientPrincipal(ApiClient(name="any", team_id=team_id))


def _as_parameter(slot, value, model):
    """A request value as the compiled statement holds it (a database's own form of
    a time or a UUID: SQLite takes both as text)."""
    if slot == "now":
        field = BreakGlassGrant._meta.get_field("expires_at")
        return field.get_db_prep_value(value, connection, prepared=False)
    if slot == "record":
        return model._meta.pk.get_db_prep_value(value, connection, prepared=False)
    return value


@functools.cache
def _visible_sql_template(kind, model, perm_model, codename, patient_field):
    """(sql, [(slot, constant)]) of the rule for one record, compiled with the
    stand-in values; a slot names the request value a parameter takes."""
    any_record = _ANY_UUID if model._meta.pk.get_internal_type() == "UUIDField" else _ANY_INT
    queryset = records_visible_to(
        _stand_in(kind),
        queryset=model._default_manager.all(),
        perm_model=perm_model,
        codename=codename,
        patient_field=patient_field,
        now=_ANY_TIME,
    ).filter(pk=any_record)
    sql, params = visible_sql(queryset)
    stand_ins = [
        (slot, _as_parameter(slot, value, model))
        for slot, value in (
            ("user", _ANY_USER_ID),
            ("team", _ANY_TEAM_ID),
            ("now", _ANY_TIME),
            ("record", any_record),
        )
    ]
    template = []
    for value in params:
        slot = next(
            (
                name
                for name, stand_in in stand_ins
                if type(value) is type(stand_in) and value == stand_in
            ),
            None,
        )
        template.append((slot, value))
    return sql, template


def visible_sql_for(user, *, model, perm_model, codename, patient_field, record_id):
    """visible_sql(records_visible_to(user, ...).filter(pk=record_id)), compiled once
    per process and kind of principal (staff, an integration of a team, one of the
    practice) instead of on every request: what the rule's statement holds of the
    request is its parameters (the user's id, the key's team, the clock, the
    record), filled in here. The rule must keep to that (no value of the user
    written into the statement's shape): tests/compliance/test_access_matrix.py
    compares this with a fresh compilation for every principal of the matrix.
    Returns (sql, params)."""
    kind = _kind_of(user)
    if kind is None:
        return visible_sql(
            records_visible_to(
                user,
                queryset=model._default_manager.all(),
                perm_model=perm_model,
                codename=codename,
                patient_field=patient_field,
            ).filter(pk=record_id)
        )
    sql, template = _visible_sql_template(kind, model, perm_model, codename, patient_field)
    values = {
        "user": user.pk,
        "team": user.client.team_id if kind == "team_client" else None,
        "now": timezone.now(),
        "record": record_id,
    }
    return sql, [
        value if slot is None else _as_parameter(slot, values[slot], model)
        for slot, value in template
    ]


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
        rows = sql.fetch(_team_ids_statement(), [user.pk], [None])
        cached = [team_id for (team_id,) in rows]
        user._team_ids_cache = cached
    return cached


@functools.cache
def _team_ids_statement():
    # `Team.objects.filter(group__user=user).values_list("pk")` written out: asked
    # on every inbox request, where compiling the QuerySet cost four times running it.
    quote = connection.ops.quote_name
    memberships = get_user_model().groups.through._meta
    team = Team._meta
    return (
        f"SELECT t.{quote(team.pk.column)} FROM {quote(team.db_table)} t "  # noqa: S608
        f"JOIN {quote(memberships.db_table)} m "
        f"ON m.{quote(memberships.get_field('group').column)} = "
        f"t.{quote(team.get_field('group').column)} "
        f"WHERE m.{quote(memberships.get_field('user').column)} = %s "
        f"ORDER BY t.{quote(team.get_field('name').column)}"
    )
