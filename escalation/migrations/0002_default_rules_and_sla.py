"""Default SLA targets per priority and the default escalation rules. Admins change
them afterwards; running this again (or on a database that has them) adds nothing."""

from django.db import migrations

# Business minutes: (first response, next response, resolution), per priority
# 0 low, 1 normal, 2 high, 3 urgent.
SLA_DEFAULTS = {
    0: (480, 960, 7200),
    1: (240, 480, 2880),
    2: (60, 120, 960),
    3: (15, 30, 240),
}

EMERGENCY_PHRASES = [
    "chest pain",
    "chest pains",
    "chest pressure",
    "heart attack",
    "can't breathe",
    "cannot breathe",
    "can't breath",
    "trouble breathing",
    "difficulty breathing",
    "short of breath",
    "shortness of breath",
    "suicidal",
    "suicide",
    "kill myself",
    "end my life",
    "want to die",
    "hurt myself",
    "self harm",
    "overdose",
    "overdosed",
    "took too many pills",
    "stroke",
    "face drooping",
    "slurred speech",
    "severe bleeding",
    "bleeding heavily",
    "won't stop bleeding",
    "unconscious",
    "passed out",
    "seizure",
    "anaphylaxis",
    "throat closing",
    "throat is closing",
]

EMERGENCY_REPLY = (
    "Hi $first_name, this is $practice_name. If this is a medical emergency, call 911 "
    "now. If you are thinking about suicide or are in crisis, call or text 988 (Suicide "
    "& Crisis Lifeline). Our clinical team has been alerted and will contact you."
)

DEFAULT_RULES = [
    {
        "name": "Clinical emergency",
        "order": 10,
        "conditions": {"phrases": EMERGENCY_PHRASES},
        "actions": {
            "set_priority": "urgent",
            "route_to_team": "clinical",
            "notify_supervisors": True,
            "auto_reply_template": EMERGENCY_REPLY,
        },
    },
    {
        "name": "Strongly negative sentiment",
        "order": 20,
        "conditions": {"sentiment_at_or_below": -0.6},
        "actions": {
            "set_priority": "high",
            "notify_supervisors": True,
            "route_to_supervisor": True,
        },
    },
    {
        "name": "No staff response within the SLA",
        "order": 30,
        "conditions": {"no_response_within_sla": True},
        "actions": {"set_priority": "high", "notify_supervisors": True},
    },
]


def add_defaults(apps, schema_editor):
    SlaPolicy = apps.get_model("escalation", "SlaPolicy")
    EscalationRule = apps.get_model("escalation", "EscalationRule")
    for priority, (first, following, resolution) in SLA_DEFAULTS.items():
        SlaPolicy.objects.get_or_create(
            priority=priority,
            defaults={
                "first_response_minutes": first,
                "next_response_minutes": following,
                "resolution_minutes": resolution,
            },
        )
    for rule in DEFAULT_RULES:
        EscalationRule.objects.get_or_create(
            name=rule["name"],
            defaults={
                "order": rule["order"],
                "conditions": rule["conditions"],
                "actions": rule["actions"],
            },
        )


def remove_defaults(apps, schema_editor):
    apps.get_model("escalation", "EscalationRule").objects.filter(
        name__in=[rule["name"] for rule in DEFAULT_RULES]
    ).delete()
    apps.get_model("escalation", "SlaPolicy").objects.filter(priority__in=SLA_DEFAULTS).delete()


class Migration(migrations.Migration):
    dependencies = [("escalation", "0001_initial")]

    operations = [migrations.RunPython(add_defaults, remove_defaults)]
