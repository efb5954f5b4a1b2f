"""What the FHIR interface serves: resource types, their interactions and search
parameters. The views check requests against this registry and /fhir/metadata is
generated from it, so the CapabilityStatement cannot claim what is not served."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    documentation: str


@dataclass(frozen=True)
class ResourceSpec:
    type: str
    interactions: tuple
    search_params: tuple = ()
    documentation: str = ""
    operations: tuple = field(default=())

    def search_param_names(self):
        return {param.name for param in self.search_params}


# Parameters every search takes: the page size and the page cursor handed out in
# a Bundle's next link (opaque; a keyset over the list's sort key).
COUNT_PARAM = "_count"
CURSOR_PARAM = "_cursor"
CONTROL_PARAMS = frozenset({COUNT_PARAM, CURSOR_PARAM, "_format"})
DEFAULT_COUNT = 50
MAX_COUNT = 200

BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
PATIENT_EXPORT = f"{BULK_DATA}/patient-export"
GROUP_EXPORT = f"{BULK_DATA}/group-export"
EXPORT_PARAMS = frozenset({"_type", "_since", "_outputFormat"})

_ID = SearchParam("_id", "token", "The resource id.")
_PATIENT = SearchParam("patient", "reference", "Patient/{id}.")

RESOURCES = {
    spec.type: spec
    for spec in (
        ResourceSpec(
            "Patient",
            ("read", "search-type", "create", "update"),
            (
                _ID,
                SearchParam("identifier", "token", "MRN: [system|]value, exact."),
                SearchParam("telecom", "token", "A phone number or email address, exact."),
                SearchParam("phone", "token", "A phone number in any format, exact."),
                SearchParam("email", "token", "An email address, exact, case-insensitive."),
            ),
            "Patients of the client's team. Create, and update (upsert) by identifier with "
            "PUT Patient?identifier=system|value. A merged patient carries a replaced-by link.",
            (("export", PATIENT_EXPORT),),
        ),
        ResourceSpec(
            "Communication",
            ("read", "search-type"),
            (
                _PATIENT,
                SearchParam("part-of", "reference", "Communication/{conversation id}."),
                SearchParam("medium", "token", "sms, email, voice, portal or the v3 mode code."),
                SearchParam("sent", "date", "When an outbound or internal message was sent."),
                SearchParam("received", "date", "When an inbound message was received."),
            ),
            "Every interaction, newest first; each is partOf a header Communication per "
            "conversation. Payload only with a scope that allows message content. A search "
            "reads one patient's, one conversation's (part-of) or, naming neither, every "
            "conversation the client may see.",
        ),
        ResourceSpec(
            "Appointment",
            ("read", "search-type", "create", "update"),
            (
                _PATIENT,
                SearchParam("date", "date", "The start (eq, ge, gt, le, lt)."),
                SearchParam("status", "token", "booked, cancelled, noshow or fulfilled."),
            ),
            "Appointments of the client's patients. Create, or upsert by the scheduler's "
            "identifier with PUT Appointment?identifier=system|value: the REST API's upsert, "
            "which replans reminders. A search without a patient reads every appointment "
            "of the client's patients.",
        ),
        ResourceSpec(
            "CommunicationRequest",
            ("search-type",),
            (_PATIENT,),
            "Planned and sent appointment reminders, about their Appointment. "
            "A search names a patient.",
        ),
        ResourceSpec(
            "Consent",
            ("read", "search-type", "history-instance"),
            (_PATIENT,),
            "The consent of each contact point of a patient to messages on its channel "
            "(SMS for a phone number, email for an address; one Consent per contact point, "
            "its id the contact point's). Messages go unless the patient opted out "
            "(policyRule OPTOUT); provision.type is deny after an opt-out (STOP). "
            "Consent/{id}/_history lists its versions, one per recorded change. Email has no "
            "opt-out here: an address's Consent permits. A search names a patient.",
        ),
        ResourceSpec(
            "AuditEvent",
            ("search-type",),
            (
                _PATIENT,
                SearchParam("agent", "token", "The staff user's username."),
                SearchParam("date", "date", "When the event was recorded."),
                SearchParam("entity", "reference", "Patient/{id}, or a record as type/id."),
            ),
            "The audit trail in the shape of IHE Basic Audit Log Patterns, for clients with "
            "the audit scope. A client bound to a team reads the rows about its team's "
            "patients only.",
        ),
        ResourceSpec(
            "Subscription",
            ("read", "create", "delete"),
            (),
            "R4 rest-hook subscriptions to new Communications of the client's patients "
            "(criteria Communication or Communication?patient=Patient/{id}); notifications are "
            "signed with the secret in the create response and retried by the worker.",
        ),
        ResourceSpec(
            "Group",
            (),
            (),
            "A care team, for Group/{team id}/$export (a client bound to a team exports its own).",
            (("export", GROUP_EXPORT),),
        ),
    )
}


def spec_of(resource_type):
    return RESOURCES.get(resource_type)
