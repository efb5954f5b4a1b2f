"""Translation between the apps' records and FHIR R4 resources, built and
validated with fhir.resources' models (its R4B package: for the resources served
here R4B's structure is R4's)."""

from django.conf import settings

from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.patient import Patient as FhirPatient
from patients.models import ContactPoint
from patients.services import ContactInput

# Our own code systems and extensions, named under the server's base URL.
SMS_CONSENT_EXTENSION = "StructureDefinition/sms-consent"
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
    return FhirPatient.model_validate(data)


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
    return Communication.model_validate(data)


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
    return Communication.model_validate(data)
