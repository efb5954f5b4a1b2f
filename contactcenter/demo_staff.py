"""Demo teams and staff for `make run` (local only: a known password, no TOTP)."""

from django.contrib.auth import get_user_model

from contactcenter import roles
from contactcenter.models import Team
from contactcenter.services import staff_create, team_create

DEMO_PASSWORD = "demo-password-123"  # noqa: S105 - local demo data, printed by make run

DEMO_TEAMS = (("North Clinic", False), ("South Clinic", False), ("Clinical Triage", True))
DEMO_STAFF = (
    ("agent.north", roles.AGENT, ["North Clinic"]),
    ("supervisor.north", roles.SUPERVISOR, ["North Clinic"]),
    ("agent.south", roles.AGENT, ["South Clinic"]),
    ("nurse.clinical", roles.CLINICIAN, ["Clinical Triage", "North Clinic", "South Clinic"]),
    ("compliance", roles.COMPLIANCE, []),
    ("admin", roles.ADMIN, []),
)


def load_demo_staff():
    created = 0
    User = get_user_model()
    for name, clinical in DEMO_TEAMS:
        if not Team.objects.filter(name=name).exists():
            team_create(name=name, is_clinical=clinical)
            created += 1
    for username, role, team_names in DEMO_STAFF:
        if User.objects.filter(username=username).exists():
            continue
        user = staff_create(
            username=username,
            role=role,
            teams=list(Team.objects.filter(name__in=team_names)),
            password=DEMO_PASSWORD,
        )
        if role == roles.ADMIN:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        created += 1
    return created
