"""Translation between the apps' records and FHIR R4 resources, each validated by
fhir.resources' model before it is served (its R4B package: for the resources
served here R4B's structure is R4's)."""

import datetime

from django.conf import settings

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.subscription import Subscription
from patients.models import ContactPoint
from patients.services import ContactInput

# Our own code systems and extensions, named under the server's base URL.
SMS_CONSENT_EXTENSION = "StructureDefinition/sms-consent"
CONSENT_CONTACT_POINT_EXTENSION = "StructureDefinition/consent-contact-point"
CONSENT_SOURCE_EXTENSION = "StructureDefinition/consent-source"
CONSENT_CHANNEL_SYSTEM = "CodeSystem/consent-channel"
INTERACTION_KIND_SYSTEM = "CodeSystem/interaction-kind"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
BCP47 = "urn:ietf:bcp:47"

# Channel -> v3 ParticipationMode code, and back (search accepts either spelling).
MEDIUM_OF_CHANNEL = {
    "sms": ("SMSWRIT", "SMS text"),
    "email": ("EMAILWRIT", "email"),
    "voice": ("PHONE", "telephone"),
    "portal": ("ONLINEWRIT", "online written (patient portal)"),
}
CHANNEL_OF_MEDIUM = {code: channel for channel, (code, _) in MEDIUM_OF_CHANNEL.items()}

_GENDER = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}
_DELIVERY_STATUS = {
    "queued": "in-progress",
    "sending": "in-progress",
    "sent": "completed",
    "delivered": "completed",
    "failed": "not-done",
    "undeliverable": "not-done",
}
_CONVERSATION_STATUS = {
    "open": "in-progress",
    "pending": "in-progress",
    "snoozed": "on-hold",
    "resolved": "completed",
}


def validated(model, data):
    """The resource `data` describes, as FHIR JSON (a dict), once the R4 model has
    validated it: every resource served goes through its model. The dict itself is
    what is rendered, because the models' own JSON dump costs several times the
    validation (bench/fhir_search.py) and adds nothing to data that passed it."""
    resource = {"resourceType": model.get_resource_type(), **_pruned(data)}
    model.model_validate(resource)
    return resource


def _pruned(value):
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def fhir_url(path):
    return f"{settings.PUBLIC_BASE_URL}/fhir/{path}"


def _instant(moment):
    return moment.isoformat() if moment else None


# --- Patient ----------------------------------------------------------------------


def patient_resource(patient):
    """A Patient from a patients.Patient with its contact points loaded."""
    telecom = []
    for point in patient.contact_points.all():
        entry = {
            "system": "phone" if point.kind == ContactPoint.Kind.PHONE else "email",
            "value": point.value,
            "use": "mobile" if point.kind == ContactPoint.Kind.PHONE else "home",
        }
        if point.preferred:
            entry["rank"] = 1
        if point.kind == ContactPoint.Kind.PHONE:
            entry["extension"] = [
                {"url": fhir_url(SMS_CONSENT_EXTENSION), "valueBoolean": not point.sms_opted_out}
            ]
        telecom.append(entry)
    data = {
        "id": str(patient.pk),
        "meta": {"lastUpdated": _instant(patient.updated_at)},
        "identifier": [{"system": settings.FHIR_MRN_SYSTEM, "value": patient.mrn}],
        "active": patient.active,
        "name": [{"family": patient.family_name, "given": [patient.given_name]}],
        "telecom": telecom or None,
        "gender": _GENDER.get(patient.sex) or None,
        "birthDate": patient.birth_date.isoformat() if patient.birth_date else None,
        "communication": [
            {
                "language": {"coding": [{"system": BCP47, "code": patient.preferred_language}]},
                "preferred": True,
            }
        ],
    }
    if patient.merged_into_id:
        data["link"] = [
            {"other": {"reference": f"Patient/{patient.merged_into_id}"}, "type": "replaced-by"}
        ]
    return validated(FhirPatient, data)


class PatientInputError(ValueError):
    def __init__(self, message, *, expression):
        super().__init__(message)
        self.expression = expression


def mrn_of(resource):
    """The MRN among a Patient's identifiers (the one in the practice's system)."""
    for identifier in resource.identifier or []:
        if identifier.system == settings.FHIR_MRN_SYSTEM and identifier.value:
            return identifier.value
    raise PatientInputError(
        f"A Patient needs an identifier in the system {settings.FHIR_MRN_SYSTEM} (the MRN).",
        expression="Patient.identifier",
    )


def patient_service_kwargs(resource):
    """The keyword arguments of patients.services.patient_create/_update for a
    validated FHIR Patient."""
    name = (resource.name or [None])[0]
    if name is None or not name.family or not name.given:
        raise PatientInputError(
            "A Patient needs a name with a family and a given name.", expression="Patient.name"
        )
    phones, emails = [], []
    for point in resource.telecom or []:
        if not point.value:
            continue
        item = ContactInput(value=point.value, preferred=point.rank == 1)
        if point.system in ("phone", "sms"):
            phones.append(item)
        elif point.system == "email":
            emails.append(item)
        else:
            raise PatientInputError(
                f"telecom system {point.system!r} is not kept here (phone, sms or email).",
                expression="Patient.telecom",
            )
    kwargs = {
        "mrn": mrn_of(resource),
        "given_name": " ".join(name.given),
        "family_name": name.family,
        "birth_date": resource.birthDate,
        "sex": resource.gender or "",
        "phones": phones,
        "emails": emails,
    }
    if resource.active is not None:
        kwargs["active"] = resource.active
    for communication in resource.communication or []:
        for coding in communication.language.coding or []:
            if coding.code and (communication.preferred or len(resource.communication) == 1):
                kwargs["preferred_language"] = coding.code[:16]
    return kwargs


# --- Communication ----------------------------------------------------------------


def _medium(channel):
    code, display = MEDIUM_OF_CHANNEL[channel]
    return [{"coding": [{"system": PARTICIPATION_MODE, "code": code, "display": display}]}]


def _practice():
    return {"display": settings.PRACTICE_NAME}


# --- Consent --------------------------------------------------------------------------

# Messages go to a contact point unless its patient opted out (v3 ActCode OPTOUT:
# shared by default, unless the patient refuses): the policy of every Consent here.
_CONSENT_POLICY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTOUT",
            "display": "opt-out",
        }
    ]
}
_CONSENT_SCOPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }
    ]
}
_CONSENT_CATEGORY = [
    {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}
]


def consent_versions(point):
    """The versions of a contact point's Consent, oldest first, as
    (opted_out, source, since): as the point was created, then one per recorded
    change (patients.ConsentChange, loaded as `consent_changes` oldest first).
    An email address has no opt-out here: its one version permits."""
    changes = [c for c in point.consent_changes.all() if c.channel == "sms"]
    if point.kind != ContactPoint.Kind.PHONE:
        return [(False, "", point.created_at)]
    initial = (not changes[0].opted_out) if changes else point.sms_opted_out
    versions = [(initial, "", point.created_at)]
    versions += [(c.opted_out, c.source, c.changed_at) for c in changes]
    return versions


def consent_resource(point, *, version=None):
    """The Consent of a contact point to messages on its channel (SMS for a phone
    number, email for an address), at its latest version or at `version` (1-based)."""
    versions = consent_versions(point)
    number = version or len(versions)
    opted_out, source, since = versions[number - 1]
    channel = "sms" if point.kind == ContactPoint.Kind.PHONE else "email"
    extensions = [
        {
            "url": fhir_url(CONSENT_CONTACT_POINT_EXTENSION),
            "valueContactPoint": {
                "system": "phone" if channel == "sms" else "email",
                "value": point.value,
            },
        }
    ]
    if source:
        extensions.append({"url": fhir_url(CONSENT_SOURCE_EXTENSION), "valueCode": source})
    data = {
        "id": str(point.pk),
        "meta": {"versionId": str(number), "lastUpdated": _instant(since)},
        "extension": extensions,
        "status": "active",
        "scope": _CONSENT_SCOPE,
        "category": _CONSENT_CATEGORY,
        "patient": {"reference": f"Patient/{point.patient_id}"},
        "dateTime": _instant(since),
        "policyRule": _CONSENT_POLICY,
        "provision": {
            "type": "deny" if opted_out else "permit",
            "period": {"start": _instant(since)},
            "action": [
                {
                    "coding": [
                        {
                            "system": fhir_url(CONSENT_CHANNEL_SYSTEM),
                            "code": channel,
                            "display": "SMS texts" if channel == "sms" else "email",
                        }
                    ]
                }
            ],
        },
    }
    return validated(Consent, data)


def communication_resource(row, *, patient_id, content):
    """A Communication from a timeline row (channels_app.selectors), partOf the
    header Communication of its conversation."""
    patient = {"reference": f"Patient/{patient_id}"} if patient_id else None
    direction = row["direction"]
    data = {
        "id": str(row["id"]),
        "partOf": [{"reference": f"Communication/{row['conversation_id']}"}],
        "status": _DELIVERY_STATUS.get(row["delivery_status"], "completed")
        if direction == "outbound"
        else "completed",
        "category": [
            {"coding": [{"system": fhir_url(INTERACTION_KIND_SYSTEM), "code": row["kind"]}]}
        ],
        "medium": _medium(row["channel"]),
        "subject": patient,
    }
    staff = {"display": row["author"]} if row.get("author") else _practice()
    if direction == "inbound":
        data["received"] = _instant(row["occurred_at"])
        data["sender"] = patient
        data["recipient"] = [_practice()]
    else:
        data["sent"] = _instant(row["occurred_at"])
        data["sender"] = staff
        if direction == "outbound" and patient:
            data["recipient"] = [patient]
    if row.get("delivery_error") and data["status"] == "not-done":
        data["statusReason"] = {"text": row["delivery_error"]}
    if content and row.get("body"):
        data["payload"] = [{"contentString": row["body"]}]
    return validated(Communication, data)


def conversation_resource(conversation, *, content):
    """The header Communication of a conversation: the thread its messages are
    partOf."""
    data = {
        "id": str(conversation.pk),
        "status": _CONVERSATION_STATUS[conversation.status],
        "medium": _medium(conversation.channel),
        "subject": {"reference": f"Patient/{conversation.patient_id}"}
        if conversation.patient_id
        else None,
        "sent": _instant(conversation.created_at),
        "topic": {"text": conversation.subject} if content and conversation.subject else None,
    }
    return validated(Communication, data)


# --- Appointment ------------------------------------------------------------------

# Ours -> FHIR: a confirmed appointment is booked with the patient's acceptance.
APPOINTMENT_STATUS = {
    "booked": ("booked", "needs-action"),
    "confirmed": ("booked", "accepted"),
    "cancelled": ("cancelled", "declined"),
    "noshow": ("noshow", "accepted"),
    "fulfilled": ("fulfilled", "accepted"),
}
_STATUS_OF_FHIR = {"booked": "booked", "cancelled": "cancelled", "noshow": "noshow"}
_STATUS_OF_FHIR.update({"fulfilled": "fulfilled", "pending": "booked", "proposed": "booked"})


def appointment_resource(appointment):
    status, patient_status = APPOINTMENT_STATUS[appointment.status]
    participants = [
        {
            "actor": {"reference": f"Patient/{appointment.patient_id}"},
            "status": patient_status,
            "required": "required",
        }
    ]
    if appointment.provider_name:
        participants.append({"actor": {"display": appointment.provider_name}, "status": "accepted"})
    if appointment.location:
        participants.append(
            {
                "actor": {"display": appointment.location},
                "status": "accepted",
                "required": "information-only",
            }
        )
    start = appointment.starts_at
    end = start + datetime.timedelta(minutes=appointment.duration_minutes)
    data = {
        "id": str(appointment.pk),
        "meta": {"lastUpdated": _instant(appointment.updated_at)},
        "identifier": [{"system": appointment.source, "value": appointment.external_id}]
        if appointment.external_id
        else None,
        "status": status,
        "start": _instant(start),
        "end": _instant(end),
        "minutesDuration": appointment.duration_minutes,
        "participant": participants,
    }
    return validated(Appointment, data)


class AppointmentInputError(ValueError):
    def __init__(self, message, *, expression):
        super().__init__(message)
        self.expression = expression


def appointment_patient_id(resource):
    for participant in resource.participant or []:
        reference = participant.actor.reference if participant.actor else None
        if reference and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    raise AppointmentInputError(
        "An Appointment needs a participant whose actor is Patient/{id}.",
        expression="Appointment.participant",
    )


def appointment_service_kwargs(resource):
    """Fields of patients.services.appointment_* for a validated Appointment."""
    if resource.start is None:
        raise AppointmentInputError("An Appointment needs a start.", expression="Appointment.start")
    if resource.minutesDuration:
        duration = resource.minutesDuration
    elif resource.end:
        duration = int((resource.end - resource.start).total_seconds() // 60)
    else:
        duration = 30
    if not 1 <= duration <= 24 * 60:
        raise AppointmentInputError(
            "An Appointment lasts between one minute and a day.", expression="Appointment.end"
        )
    status = _STATUS_OF_FHIR.get(resource.status)
    if status is None:
        raise AppointmentInputError(
            f"Appointment status {resource.status!r} is not kept here "
            f"({', '.join(sorted(_STATUS_OF_FHIR))}).",
            expression="Appointment.status",
        )
    provider = location = ""
    for participant in resource.participant or []:
        if participant.actor is None or participant.actor.reference:
            patient_accepted = (
                participant.actor is not None
                and participant.actor.reference.startswith("Patient/")
                and participant.status == "accepted"
            )
            if status == "booked" and patient_accepted:
                status = "confirmed"
            continue
        if participant.required == "information-only":
            location = (participant.actor.display or "")[:200]
        else:
            provider = (participant.actor.display or "")[:200]
    return {
        "starts_at": resource.start,
        "duration_minutes": duration,
        "status": status,
        "provider_name": provider,
        "location": location,
    }


# --- CommunicationRequest (reminders) ---------------------------------------------

_REMINDER_STATUS = {
    "scheduled": "active",
    "sent": "completed",
    "skipped": "revoked",
    "failed": "revoked",
    "cancelled": "revoked",
}


def reminder_resource(reminder, *, patient_id):
    data = {
        "id": str(reminder.pk),
        "status": _REMINDER_STATUS.get(reminder.state, "unknown"),
        "category": [{"text": "appointment reminder"}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": [{"reference": f"Appointment/{reminder.appointment_id}"}],
        "recipient": [{"reference": f"Patient/{patient_id}"}],
        "medium": _medium(reminder.channel) if reminder.channel else None,
        "occurrenceDateTime": _instant(reminder.planned_at),
        "authoredOn": _instant(reminder.created_at),
        "statusReason": {"text": reminder.skip_reason} if reminder.skip_reason else None,
    }
    return validated(CommunicationRequest, data)


# --- AuditEvent (IHE Basic Audit Log Patterns) ------------------------------------

_AUDIT_ACTION = {"create": "C", "read": "R", "update": "U", "delete": "D"}
_REST_INTERACTION = {"create": "create", "read": "read", "update": "update", "delete": "delete"}
_AUDIT_OUTCOME = {"success": "0", "denied": "4", "error": "8"}
_LOGIN_ACTIONS = {
    "login": "110122",
    "login_failed": "110122",
    "logout": "110123",
    "lockout": "110122",
}
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def audit_event_resource(event):
    """An audit row as a FHIR AuditEvent shaped after BALP: a RESTful or login
    event, the requesting agent (staff user or API client) with its network
    address, the server as source, and one entity per patient plus the record."""
    if event.action in _LOGIN_ACTIONS:
        event_type = {"system": DICOM, "code": "110114", "display": "User Authentication"}
        subtype = [{"system": DICOM, "code": _LOGIN_ACTIONS[event.action]}]
    else:
        event_type = {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        interaction = _REST_INTERACTION.get(event.action, "operation")
        subtype = [{"system": RESTFUL_INTERACTION, "code": interaction}]
    if event.actor_username:
        who = {
            "identifier": {"system": fhir_url("sid/staff"), "value": event.actor_username},
            "display": event.actor_username,
        }
        agent_role = event.actor_role or None
    elif event.api_client_name:
        who = {
            "identifier": {"system": fhir_url("sid/api-client"), "value": str(event.api_client_id)},
            "display": event.api_client_name,
        }
        agent_role = "integration"
    else:
        who = {"display": "anonymous"}
        agent_role = None
    agent = {
        "type": {
            "coding": [
                {"system": PARTICIPATION_TYPE, "code": "IRCP", "display": "information recipient"}
            ]
        },
        "who": who,
        "requestor": True,
        "role": [{"text": agent_role}] if agent_role else None,
        "network": {"address": event.source_ip, "type": "2"} if event.source_ip else None,
        "purposeOfUse": [{"coding": [{"system": PURPOSE_OF_USE, "code": event.purpose_of_use}]}],
    }
    entities = [
        {
            "what": {"reference": f"Patient/{patient_id}"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for patient_id in event.patient_ids
    ]
    if event.resource_type:
        entities.append(
            {
                "what": {
                    "identifier": {
                        "system": fhir_url(f"sid/{event.resource_type}"),
                        "value": event.resource_id or "-",
                    }
                },
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    data = {
        "id": str(event.pk),
        "type": event_type,
        "subtype": subtype,
        "action": _AUDIT_ACTION.get(event.action, "E"),
        "recorded": _instant(event.recorded_at),
        "outcome": _AUDIT_OUTCOME[event.outcome],
        "outcomeDesc": f"HTTP {event.http_status}" if event.http_status else None,
        "purposeOfEvent": [{"coding": [{"system": PURPOSE_OF_USE, "code": event.purpose_of_use}]}],
        "agent": [agent],
        "source": {
            "site": settings.PRACTICE_NAME,
            "observer": {"display": "contactcenter"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                }
            ],
        },
        "entity": entities or None,
    }
    return validated(AuditEvent, data)


# --- Subscription -----------------------------------------------------------------

SUBSCRIPTION_SECRET_EXTENSION = "StructureDefinition/subscription-signing-secret"  # noqa: S105


def subscription_resource(subscription, *, with_secret=False):
    data = {
        "id": str(subscription.pk),
        "status": subscription.status,
        "reason": "New Communications of this client's patients.",
        "criteria": subscription.criteria,
        "error": subscription.reason or None,
        "channel": {
            "type": "rest-hook",
            "endpoint": subscription.endpoint,
            "payload": "application/fhir+json" if subscription.with_payload else None,
        },
    }
    if with_secret:
        data["extension"] = [
            {"url": fhir_url(SUBSCRIPTION_SECRET_EXTENSION), "valueString": subscription.secret}
        ]
    return validated(Subscription, data)
