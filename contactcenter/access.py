"""Grants of PHI objects to teams, through django-guardian's direct-FK group
permissions: a patient or conversation is granted to the group of the team that
owns it. Who may see what is decided in compliance.access."""

from guardian.shortcuts import assign_perm, remove_perm


def grant_team_access(*, obj, team, perm):
    assign_perm(perm, team.group, obj)


def revoke_team_access(*, obj, team, perm):
    remove_perm(perm, team.group, obj)
