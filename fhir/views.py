"""The FHIR R4 endpoints: thin views over the selectors and services the REST API
calls, so access rules and audit rows are the REST API's own."""

import datetime
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.http import FileResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from pydantic import ValidationError as ModelValidationError
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from channels_app import selectors as channel_selectors
from channels_app.models import Interaction
from compliance import selectors as compliance_selectors
from compliance.mixins import AuditedViewMixin
from contactcenter.blind_index import mrn_index, normalise_email, normalise_phone
from contactcenter.keyset import Cursor, InvalidCursor, KeysetPagination, PageRequest
from contactcenter.models import Team
from fhir import capability, errors, mapping, registry, services
from fhir.auth import FhirAuthentication
from fhir.rendering import AlwaysFhirJson, FhirJsonParser, FhirJsonRenderer
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.subscription import Subscription as FhirSubscription
from patients import selectors as patient_selectors
from patients import services as patient_services
from patients.models import Appointment, ContactPoint, Patient
from reminders import selectors as reminder_selectors

logger = logging.getLogger(__name__)


def _outcome_response(error):
    response = Response(errors.outcome_of(error), status=error.http_status)
    if error.http_status == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="fhir"'
    return response


_DRF_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    415: "not-supported",
    429: "throttled",
}


class FhirBaseView(APIView):
    """Renders FHIR JSON and answers every error with an OperationOutcome."""

    # FHIR is described by its CapabilityStatement, not the REST API's OpenAPI schema.
    schema = None
    renderer_classes = [FhirJsonRenderer]
    parser_classes = [FhirJsonParser, JSONParser]
    content_negotiation_class = AlwaysFhirJson

    def handle_exception(self, exc):
        if isinstance(exc, errors.FhirError):
            return _outcome_response(exc)
        if isinstance(exc, ModelValidationError):
            return _outcome_response(errors.invalid(_validation_message(exc)))
        if isinstance(exc, exceptions.APIException):
            code = _DRF_CODES.get(exc.status_code, "processing")
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            return _outcome_response(
                errors.FhirError(detail, http_status=exc.status_code, code=code)
            )
        logger.exception("fhir request failed")
        return _outcome_response(
            errors.FhirError(
                "The server could not answer this request.",
                http_status=status.HTTP_500_INTERNAL_SERVER_ERROR,
                code="exception",
            )
        )


def _validation_message(exc):
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"The resource is not valid FHIR R4: {where}: {first.get('msg')}."


class FhirResourceView(AuditedViewMixin, FhirBaseView):
    """A resource endpoint: authenticated integrations, checked against the SMART
    scope each interaction needs and audited like the REST API."""

    authentication_classes = [FhirAuthentication]
    # Scopes are checked per interaction by require(), against the SMART grant.
    permission_classes = []
    resource_type = ""
    lookup_url_kwarg = "resource_id"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("Send a SMART backend token or an API key.")

    def require(self, permission):
        grant = self.request.user.fhir_grant
        if not grant.allows(self.resource_type, permission):
            raise errors.forbidden(
                f"This client's scopes do not include system/{self.resource_type}.{permission}."
            )

    # --- search helpers ---------------------------------------------------------

    def search_params(self):
        """The query's search parameters, refusing any this resource does not
        support (a client would otherwise get more than it asked for)."""
        spec = registry.spec_of(self.resource_type)
        params = {}
        for name, values in self.request.query_params.lists():
            base = name.split(":", 1)[0]
            if base in registry.CONTROL_PARAMS:
                continue
            if ":" in name or base not in spec.search_param_names():
                raise errors.invalid(
                    f"Unknown search parameter {name!r} for {self.resource_type}; supported: "
                    f"{', '.join(sorted(spec.search_param_names()))}.",
                    expression=name,
                )
            params[base] = values
        return params

    def page_request(self):
        raw = self.request.query_params.get(registry.COUNT_PARAM)
        try:
            size = int(raw) if raw else registry.DEFAULT_COUNT
        except ValueError:
            raise errors.invalid("_count must be a whole number.", expression="_count") from None
        if size < 1:
            raise errors.invalid("_count must be at least 1.", expression="_count")
        text = self.request.query_params.get(registry.CURSOR_PARAM)
        try:
            cursor = Cursor.decode(text) if text else None
        except InvalidCursor:
            raise errors.invalid(
                "The _cursor is not one this server handed out; search again.",
                expression="_cursor",
            ) from None
        return PageRequest(cursor=cursor, size=min(size, registry.MAX_COUNT))

    def bundle(self, resources, *, next_cursor=None):
        url = self.request.build_absolute_uri()
        links = [{"relation": "self", "url": url}]
        if next_cursor is not None:
            links.append(
                {
                    "relation": "next",
                    "url": replace_query_param(url, registry.CURSOR_PARAM, next_cursor.encode()),
                }
            )
        base = self.request.build_absolute_uri("/fhir/")
        # The entries were validated one by one as they were built; the Bundle's
        # own fields are validated here.
        bundle = mapping.validated(Bundle, {"type": "searchset", "link": links})
        if resources:
            bundle["entry"] = [
                {
                    "fullUrl": f"{base}{resource['resourceType']}/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": "match"},
                }
                for resource in resources
            ]
        return bundle

    def parsed_resource(self, model):
        data = self.request.data
        if not isinstance(data, dict) or data.get("resourceType") != self.resource_type:
            raise errors.invalid(f"The body must be a {self.resource_type} resource.")
        return model.model_validate(data)


def _uuid(text, *, expression):
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise errors.invalid(
            f"{text!r} is not an id of this server.", expression=expression
        ) from None


def _reference_id(text, *, resource_type, expression):
    """`Type/id` or a bare id, as a UUID."""
    if text and "/" in text:
        prefix, _, text = text.rpartition("/")
        if prefix.rsplit("/", 1)[-1] != resource_type:
            raise errors.invalid(
                f"{expression} must reference a {resource_type}.", expression=expression
            )
    return _uuid(text, expression=expression)


def _token_value(text):
    """The value of a token search (`system|value` or `value`) and its system."""
    system, bar, value = text.partition("|")
    return (system, value) if bar else (None, text)


# --- Searches: one helper, a parameter table per resource type ----------------------
#
# A search view's `search_table` maps each search parameter to a parser,
# `parse(name, values) -> criteria`: the keyword arguments that parameter adds to
# the view's read (ORM lookups for a QuerySet, TimelineFilters' fields for
# Communication). Scope parameters (patient, part-of, _id) come out as criteria too;
# the view's read takes them out first, since they decide what the client may see.


def _single(name, values):
    if len(values) > 1:
        raise errors.invalid(f"Give {name} once.", expression=name)
    return values[0]


def _reference_criteria(key, resource_type):
    def parse(name, values):
        ref = _single(name, values)
        return {key: _reference_id(ref, resource_type=resource_type, expression=name)}

    return parse


def _date_criteria(field):
    """A date parameter as a half-open range of `field` (see _date_bounds)."""

    def parse(name, values):
        since, until = _date_bounds(values, name=name)
        criteria = {}
        if since:
            criteria[f"{field}__gte"] = since
        if until:
            criteria[f"{field}__lt"] = until
        return criteria

    return parse


class FhirSearchView(FhirResourceView):
    """GET on a resource type: the search. Subclasses give the parameter table and
    `search_page(criteria, page_request) -> (rows, next cursor)`, auditing what they
    read, and `resource_of(row)`."""

    search_table = {}

    def get(self, request):
        self.require("s")
        criteria, origin = {}, {}
        for name, values in self.search_params().items():
            for key, value in self.search_table[name](name, values).items():
                if key in criteria:
                    raise errors.invalid(
                        f"{origin[key]} and {name} cannot be combined in one search.",
                        expression=name,
                    )
                criteria[key], origin[key] = value, name
        rows, next_cursor = self.search_page(criteria, self.page_request())
        return Response(
            self.bundle([self.resource_of(row) for row in rows], next_cursor=next_cursor)
        )


class QuerysetSearchView(FhirSearchView):
    """A search over a QuerySet: the view's scope (`search_queryset`, which takes out
    the criteria it handles itself and audits the patient a search names), the
    remaining criteria as ORM lookups, then a keyset page newest first by
    (`sort_field`, id). Every patient of the page is audited."""

    sort_field = "created_at"

    def search_queryset(self, criteria):
        raise NotImplementedError

    def sort_key(self, row):
        return (getattr(row, self.sort_field), row.pk)

    def row_patient_ids(self, row):
        return [getattr(row, self.audit_patient_field)]

    def required_patient(self, criteria):
        """The patient this search must name (criteria `patient_id`): 400 without
        one, 404 for one the client may not see; audited."""
        if "patient_id" not in criteria:
            raise errors.invalid(f"Search {self.resource_type} by patient.", expression="patient")
        patient_id = criteria.pop("patient_id")
        self._audit_resource_id = str(patient_id)
        visible = patient_selectors.patients_visible_to(self.request.user)
        if not visible.filter(pk=patient_id).exists():
            raise errors.not_found("No such patient among those this client may see.")
        self.audit(patient_ids=[patient_id])
        return patient_id

    def search_page(self, criteria, page_request):
        queryset = self.search_queryset(criteria).filter(**criteria)
        page = _queryset_page(queryset, page_request, sort_field=self.sort_field, key=self.sort_key)
        self.audit(patient_ids=[pid for row in page.rows for pid in self.row_patient_ids(row)])
        return page.rows, page.next


# --- Metadata, discovery and the token endpoint ----------------------------------------


class MetadataView(FhirBaseView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response(
            capability.capability_statement(base_url=request.build_absolute_uri("/fhir"))
        )


class SmartConfigurationView(FhirBaseView):
    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [capability.JsonRenderer]

    def get(self, request):
        return Response(
            capability.smart_configuration(base_url=request.build_absolute_uri("/fhir"))
        )


class TokenView(APIView):
    """OAuth token endpoint of SMART Backend Services (form-encoded in, OAuth
    JSON out: errors here are OAuth's, not OperationOutcomes)."""

    schema = None
    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [FormParser]
    renderer_classes = [capability.JsonRenderer]

    def post(self, request):
        audiences = {
            request.build_absolute_uri(request.path),
            mapping.fhir_url("auth/token"),
        }
        try:
            issued = services.access_token_issue(
                form=request.data, audiences=audiences, request=request
            )
        except services.TokenRequestRefused as refused:
            code = status.HTTP_401_UNAUTHORIZED if refused.error == "invalid_client" else 400
            return Response(
                {"error": refused.error, "error_description": refused.description},
                status=code,
                headers={"Cache-Control": "no-store"},
            )
        return Response(
            {
                "access_token": issued.token,
                "token_type": "bearer",
                "expires_in": issued.expires_in,
                "scope": " ".join(issued.grant.scope_strings()),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def handle_exception(self, exc):
        if isinstance(exc, exceptions.APIException):
            return Response(
                {"error": "invalid_request", "error_description": str(exc.detail)},
                status=status.HTTP_400_BAD_REQUEST,
            )
        raise exc


def not_found_view(request, path=""):
    """Anything under /fhir/ that is not served."""
    response = Response(
        errors.outcome(f"/fhir/{path} is not served here; see /fhir/metadata.", code="not-found"),
        status=status.HTTP_404_NOT_FOUND,
    )
    response.accepted_renderer = FhirJsonRenderer()
    response.accepted_media_type = FhirJsonRenderer.media_type
    response.renderer_context = {}
    response.render()
    return response


# --- Patient ------------------------------------------------------------------------


def _queryset_page(queryset, page, *, sort_field, key=None):
    """A page of `queryset` newest first by keyset over (sort_field, id): one range
    scan of an index that ends in those columns."""
    model = queryset.model
    table, column = model._meta.db_table, model._meta.get_field(sort_field).column
    queryset = queryset.order_by(f"-{sort_field}", "-pk")
    key = key or (lambda row: (getattr(row, sort_field), row.pk))
    if page.cursor is not None:
        stamp, row_id = page.cursor.key
        queryset = queryset.extra(  # noqa: S610 - names from model metadata, values are params
            where=[f"({table}.{column}, {table}.{model._meta.pk.column}) < (%s, %s)"],
            params=[stamp, _cursor_id(model, row_id)],
        )
    rows = list(queryset[: page.size + 1])
    return KeysetPagination.page_from(rows, page=page, key_of=key)


def _cursor_id(model, row_id):
    # The shared cursor carries a UUID; a bigint key travels as UUID(int=id).
    return row_id.int if model._meta.pk.get_internal_type() == "BigAutoField" else row_id


def _identifier_criteria(name, values):
    system, value = _token_value(_single(name, values))
    if (system and system != settings.FHIR_MRN_SYSTEM) or not value:
        return {"nothing": True}  # another system's identifier: no patient of ours
    return {"mrn": value}


def _contact_criteria(name, values):
    _system, value = _token_value(_single(name, values))
    kind = name if name != "telecom" else ("email" if "@" in value else "phone")
    try:
        normalise_email(value) if kind == "email" else normalise_phone(value)
    except ValueError as exc:
        raise errors.invalid(f"{name}: {exc}", expression=name) from None
    return {kind: value}


class PatientTypeView(QuerysetSearchView):
    resource_type = "Patient"
    audit_resource_type = "patient"
    queryset = Patient.objects.none()
    search_table = {
        "_id": lambda name, values: {"pk": _uuid(_single(name, values), expression=name)},
        "identifier": _identifier_criteria,
        "phone": _contact_criteria,
        "email": _contact_criteria,
        "telecom": _contact_criteria,
    }

    def search_queryset(self, criteria):
        lookups = {key: criteria.pop(key) for key in ("mrn", "phone", "email") if key in criteria}
        if criteria.pop("nothing", False):
            return Patient.objects.none()
        patient_id = criteria.pop("pk", None)
        user = self.request.user
        if patient_id is None:
            return patient_selectors.patient_list(user=user, **lookups)
        # A merged patient is found by its id (and answers with its replaced-by link).
        queryset = patient_selectors.patients_visible_to(user).filter(pk=patient_id)
        if lookups:
            queryset = queryset.filter(
                pk__in=patient_selectors.patient_list(user=user, **lookups).values("pk")
            )
        return queryset.prefetch_related("contact_points")

    def resource_of(self, row):
        return mapping.patient_resource(row)

    def post(self, request):
        self.require("c")
        resource = self.parsed_resource(FhirPatient)
        try:
            kwargs = mapping.patient_service_kwargs(resource)
        except mapping.PatientInputError as exc:
            raise errors.invalid(str(exc), expression=exc.expression) from None
        team = _client_team(request)
        try:
            patient = patient_services.patient_create(
                team=team, time_zone=settings.PRACTICE_TIME_ZONE, **_valid_contacts(kwargs)
            )
        except patient_services.DuplicateMrn:
            raise errors.conflict(
                "A patient with this identifier exists: update it with "
                "PUT Patient?identifier=system|value."
            ) from None
        self.audit(patient_ids=[patient.pk], resource_id=patient.pk)
        return _patient_answer(self, patient.pk, status.HTTP_201_CREATED)

    def put(self, request):
        """Conditional update: upsert by identifier (the MRN)."""
        self.require("u")
        resource = self.parsed_resource(FhirPatient)
        try:
            kwargs = mapping.patient_service_kwargs(resource)
        except mapping.PatientInputError as exc:
            raise errors.invalid(str(exc), expression=exc.expression) from None
        identifier = request.query_params.get("identifier")
        if not identifier or _token_value(identifier)[1] != kwargs["mrn"]:
            raise errors.invalid(
                "Upsert with PUT Patient?identifier=system|value naming the body's MRN.",
                expression="identifier",
            )
        existing = (
            patient_selectors.patients_visible_to(request.user)
            .filter(mrn_index=mrn_index(kwargs["mrn"]))
            .first()
        )
        if existing is None:
            self.require("c")
            return self.post(request)
        return _update_patient(self, existing, kwargs)


def _patient_answer(view, patient_id, http_status):
    patient = patient_selectors.patient_get_visible(user=view.request.user, patient_id=patient_id)
    response = Response(mapping.patient_resource(patient), status=http_status)
    response["Location"] = view.request.build_absolute_uri(f"/fhir/Patient/{patient_id}")
    return response


def _client_team(request):
    team_id = request.user.client.team_id
    if team_id is None:
        raise errors.invalid(
            "This client is bound to no team, so a patient it creates would belong to none: "
            "bind the API client to a team."
        )
    return Team.objects.get(pk=team_id)


def _valid_contacts(kwargs):
    """Contact values normalised the way the service will, so a bad number is a
    400 naming it, not an error inside the transaction."""
    for name, normalise in (("phones", normalise_phone), ("emails", normalise_email)):
        for item in kwargs.get(name, ()):
            try:
                normalise(item.value)
            except ValueError as exc:
                raise errors.invalid(
                    f"telecom {item.value!r}: {exc}", expression="Patient.telecom"
                ) from None
    return kwargs


def _update_patient(view, patient, kwargs):
    if patient.merged_into_id:
        raise errors.conflict(
            f"This patient was merged into Patient/{patient.merged_into_id}; update that one."
        )
    try:
        patient_services.patient_update(patient=patient, **_valid_contacts(kwargs))
    except patient_services.DuplicateMrn:
        raise errors.conflict("Another patient has this identifier.") from None
    view.audit(patient_ids=[patient.pk], resource_id=patient.pk)
    return _patient_answer(view, patient.pk, status.HTTP_200_OK)


class PatientInstanceView(FhirResourceView):
    resource_type = "Patient"
    audit_resource_type = "patient"
    queryset = Patient.objects.none()

    def _visible(self, resource_id):
        patient = patient_selectors.patient_get_visible(
            user=self.request.user, patient_id=_uuid(resource_id, expression="id")
        )
        if patient is None:
            raise errors.not_found()
        return patient

    def get(self, request, resource_id):
        self.require("r")
        patient = self._visible(resource_id)
        self.audit(patient_ids=[patient.pk], resource_id=patient.pk)
        return Response(mapping.patient_resource(patient))

    def put(self, request, resource_id):
        self.require("u")
        patient = self._visible(resource_id)
        resource = self.parsed_resource(FhirPatient)
        if resource.id and resource.id != str(patient.pk):
            raise errors.invalid("The body's id is not the URL's.", expression="Patient.id")
        try:
            kwargs = mapping.patient_service_kwargs(resource)
        except mapping.PatientInputError as exc:
            raise errors.invalid(str(exc), expression=exc.expression) from None
        with transaction.atomic():
            return _update_patient(self, patient, kwargs)


# --- Communication ------------------------------------------------------------------


def _date_bounds(values, *, name):
    """(since, until) of FHIR date searches (eq, ge, gt, le, lt prefixes; a date
    covers its whole day in UTC, a dateTime is an instant)."""
    since = until = None
    for raw in values:
        prefix, text = (
            (raw[:2], raw[2:]) if raw[:2] in ("eq", "ge", "gt", "le", "lt") else ("eq", raw)
        )
        moment = parse_datetime(text) if "T" in text else None
        day = parse_date(text) if moment is None else None
        if moment is None and day is None:
            raise errors.invalid(f"{name}={raw!r} is not a FHIR date.", expression=name)
        if moment is not None:
            if timezone.is_naive(moment):
                raise errors.invalid(f"{name}: give the time zone of {text!r}.", expression=name)
            start, end = moment, moment + datetime.timedelta(microseconds=1)
        else:
            start = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
            end = start + datetime.timedelta(days=1)
        if prefix in ("eq", "ge"):
            since = max(since, start) if since else start
        if prefix == "gt":
            since = max(since, end) if since else end
        if prefix in ("eq", "le"):
            until = min(until, end) if until else end
        if prefix == "lt":
            until = min(until, start) if until else start
    return since, until


def _medium_criteria(name, values):
    code = _token_value(_single(name, values))[1]
    channel = mapping.CHANNEL_OF_MEDIUM.get(code, code)
    if channel not in mapping.MEDIUM_OF_CHANNEL:
        raise errors.invalid(f"Unknown {name} {code!r}.", expression=name)
    return {"channel": channel}


def _direction_criteria(direction):
    """sent (outbound messages) or received (inbound ones), in a date range."""

    def parse(name, values):
        since, until = _date_bounds(values, name=name)
        return {"direction": direction, "since": since, "until": until}

    return parse


class CommunicationTypeView(FhirSearchView):
    """Every interaction, newest first: of one patient (their timeline), of one
    conversation (part-of), or of every conversation the client may see."""

    resource_type = "Communication"
    audit_resource_type = "timeline"
    audit_patient_field = "patient_id"
    queryset = Interaction.objects.none()
    search_table = {
        "patient": _reference_criteria("patient", "Patient"),
        "part-of": _reference_criteria("part_of", "Communication"),
        "medium": _medium_criteria,
        "sent": _direction_criteria("outbound"),
        "received": _direction_criteria("inbound"),
    }

    def search_page(self, criteria, page_request):
        user = self.request.user
        patient_id, conversation_id = criteria.pop("patient", None), criteria.pop("part_of", None)
        filters = channel_selectors.TimelineFilters(**criteria)
        if patient_id is not None and conversation_id is not None:
            raise errors.invalid("Search Communication by patient or by part-of, not both.")
        if patient_id is not None:
            self._audit_resource_id = str(patient_id)
            page = channel_selectors.timeline_page(
                user=user, patient_id=patient_id, filters=filters, page=page_request
            )
            if page is None:
                raise errors.not_found("No such patient among those this client may see.")
            self.audit(patient_ids=[patient_id])
        elif conversation_id is not None:
            conversation = channel_selectors.conversation_get_visible(
                user=user, conversation_id=conversation_id
            )
            if conversation is None:
                raise errors.not_found("No such conversation among those this client may see.")
            self.audit(patient_ids=[conversation.patient_id], conversation=str(conversation.pk))
            page = channel_selectors.conversation_messages_page(
                conversation=conversation, page=page_request, filters=filters
            )
        else:
            page = channel_selectors.interactions_page(
                user=user, filters=filters, page=page_request
            )
            self.audit(patient_ids=sorted({row["patient_id"] for row in page.rows} - {None}))
        return page.rows, page.next

    def resource_of(self, row):
        return mapping.communication_resource(
            row, patient_id=row["patient_id"], content=self.request.user.fhir_grant.content
        )


class CommunicationInstanceView(FhirResourceView):
    resource_type = "Communication"
    audit_resource_type = "timeline"
    audit_patient_field = "patient_id"
    queryset = Interaction.objects.none()

    def get(self, request, resource_id):
        self.require("r")
        resource_uuid = _uuid(resource_id, expression="id")
        content = request.user.fhir_grant.content
        row = channel_selectors.interaction_get_visible(
            user=request.user, interaction_id=resource_uuid
        )
        if row is not None:
            self.audit(patient_ids=[row["patient_id"]])
            return Response(
                mapping.communication_resource(row, patient_id=row["patient_id"], content=content)
            )
        conversation = channel_selectors.conversation_get_visible(
            user=request.user, conversation_id=resource_uuid
        )
        if conversation is None:
            raise errors.not_found()
        self.audit(patient_ids=[conversation.patient_id])
        return Response(mapping.conversation_resource(conversation, content=content))


# --- Appointment --------------------------------------------------------------------


def _appointment_input(view, resource):
    try:
        kwargs = mapping.appointment_service_kwargs(resource)
        patient_id = mapping.appointment_patient_id(resource)
    except mapping.AppointmentInputError as exc:
        raise errors.invalid(str(exc), expression=exc.expression) from None
    patient = patient_selectors.patient_get_visible(
        user=view.request.user,
        patient_id=_uuid(patient_id, expression="Appointment.participant.actor"),
    )
    if patient is None:
        raise errors.not_found("No such patient among those this client may see.")
    return patient, kwargs


def _appointment_status_criteria(name, values):
    wanted = _single(name, values)
    return {
        "status__in": [
            ours
            for ours, (fhir_status, _patient_status) in mapping.APPOINTMENT_STATUS.items()
            if fhir_status == wanted
        ]
    }


class AppointmentTypeView(QuerysetSearchView):
    resource_type = "Appointment"
    audit_resource_type = "appointment"
    audit_patient_field = "patient_id"
    queryset = Appointment.objects.none()
    search_table = {
        "patient": _reference_criteria("patient_id", "Patient"),
        "date": _date_criteria("starts_at"),
        "status": _appointment_status_criteria,
    }
    sort_field = "starts_at"

    def search_queryset(self, criteria):
        if "patient_id" in criteria:
            self._audit_resource_id = str(criteria["patient_id"])
        return patient_selectors.appointments_visible_to(self.request.user)

    def resource_of(self, row):
        return mapping.appointment_resource(row)

    def post(self, request):
        self.require("c")
        resource = self.parsed_resource(FhirAppointment)
        patient, kwargs = _appointment_input(self, resource)
        identifier = (resource.identifier or [None])[0]
        if identifier is None:
            appointment = patient_services.appointment_create(patient=patient, **kwargs)
            created = True
        else:
            appointment, created = _upsert(
                identifier.system or "", identifier.value, patient, kwargs
            )
        self.audit(patient_ids=[patient.pk], resource_id=appointment.pk)
        return self._answer(appointment, created)

    def put(self, request):
        """Conditional update by the scheduler's identifier: the REST upsert."""
        self.require("u")
        resource = self.parsed_resource(FhirAppointment)
        identifier = request.query_params.get("identifier")
        if not identifier or "|" not in identifier:
            raise errors.invalid(
                "Upsert with PUT Appointment?identifier=system|value.", expression="identifier"
            )
        system, value = _token_value(identifier)
        patient, kwargs = _appointment_input(self, resource)
        appointment, created = _upsert(system, value, patient, kwargs)
        if created:
            self.require("c")
        self.audit(patient_ids=[patient.pk], resource_id=appointment.pk)
        return self._answer(appointment, created)

    def _answer(self, appointment, created):
        response = Response(
            mapping.appointment_resource(appointment),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
        response["Location"] = self.request.build_absolute_uri(
            f"/fhir/Appointment/{appointment.pk}"
        )
        return response


def _upsert(source, external_id, patient, kwargs):
    if not source or not external_id or len(source) > 64 or len(external_id) > 128:
        raise errors.invalid(
            "An appointment identifier needs a system (the scheduler, up to 64 characters) "
            "and a value (up to 128).",
            expression="Appointment.identifier",
        )
    try:
        with transaction.atomic():
            return patient_services.appointment_upsert_external(
                source=source, external_id=external_id, patient=patient, **kwargs
            )
    except ValueError as exc:
        raise errors.conflict(str(exc)) from None


class AppointmentInstanceView(FhirResourceView):
    resource_type = "Appointment"
    audit_resource_type = "appointment"
    audit_patient_field = "patient_id"
    queryset = Appointment.objects.none()

    def get(self, request, resource_id):
        self.require("r")
        appointment = (
            patient_selectors.appointments_visible_to(request.user)
            .filter(pk=_uuid(resource_id, expression="id"))
            .first()
        )
        if appointment is None:
            raise errors.not_found()
        self.audit(patient_ids=[appointment.patient_id], resource_id=appointment.pk)
        return Response(mapping.appointment_resource(appointment))


# --- Consent ----------------------------------------------------------------------------


class ConsentTypeView(QuerysetSearchView):
    """The SMS or email consent of each contact point of a patient."""

    resource_type = "Consent"
    audit_resource_type = "consent"
    audit_patient_field = "patient_id"
    queryset = ContactPoint.objects.none()
    search_table = {"patient": _reference_criteria("patient_id", "Patient")}

    def search_queryset(self, criteria):
        patient_id = self.required_patient(criteria)
        consents = patient_selectors.contact_point_consents_visible_to(self.request.user)
        return consents.filter(patient_id=patient_id)

    def resource_of(self, row):
        return mapping.consent_resource(row)


class ConsentInstanceView(FhirResourceView):
    """A contact point's Consent (read), and its versions (`_history`)."""

    resource_type = "Consent"
    audit_resource_type = "consent"
    audit_patient_field = "patient_id"
    queryset = ContactPoint.objects.none()

    def _visible(self, resource_id):
        point = (
            patient_selectors.contact_point_consents_visible_to(self.request.user)
            .filter(pk=_uuid(resource_id, expression="id"))
            .first()
        )
        if point is None:
            raise errors.not_found()
        self.audit(patient_ids=[point.patient_id], resource_id=point.pk)
        return point

    def get(self, request, resource_id, history=False):
        self.require("r")
        point = self._visible(resource_id)
        if not history:
            return Response(mapping.consent_resource(point))
        versions = len(mapping.consent_versions(point))
        url = request.build_absolute_uri(f"/fhir/Consent/{point.pk}")
        bundle = mapping.validated(
            Bundle,
            {
                "type": "history",
                "total": versions,
                "link": [{"relation": "self", "url": request.build_absolute_uri()}],
            },
        )
        # Newest version first, as a history Bundle lists them.
        bundle["entry"] = [
            {
                "fullUrl": url,
                "resource": mapping.consent_resource(point, version=number),
                "request": {"method": "POST" if number == 1 else "PUT", "url": "Consent"},
                "response": {"status": "201" if number == 1 else "200"},
            }
            for number in range(versions, 0, -1)
        ]
        return Response(bundle)


# --- CommunicationRequest (reminders) --------------------------------------------------


class CommunicationRequestTypeView(QuerysetSearchView):
    resource_type = "CommunicationRequest"
    audit_resource_type = "reminder"
    audit_patient_field = "patient_id"
    queryset = Appointment.objects.none()
    search_table = {"patient": _reference_criteria("patient_id", "Patient")}

    def search_queryset(self, criteria):
        self.patient_id = self.required_patient(criteria)
        appointments = patient_selectors.appointments_visible_to(self.request.user).filter(
            patient_id=self.patient_id
        )
        return reminder_selectors.reminders_of_appointments(appointments=appointments)

    def row_patient_ids(self, row):
        return [self.patient_id]

    def resource_of(self, row):
        return mapping.reminder_resource(row, patient_id=self.patient_id)


# --- AuditEvent ----------------------------------------------------------------------


def _agent_criteria(name, values):
    return {"actor_user_id__in": _user_ids_named(_token_value(_single(name, values))[1])}


def _entity_criteria(name, values):
    entity = _single(name, values)
    if entity.startswith("Patient/"):
        return {"patient_id": _reference_id(entity, resource_type="Patient", expression=name)}
    resource_type, _, resource_id = entity.partition("/")
    if not resource_type or not resource_id:
        raise errors.invalid(f"{name} is Patient/{{id}} or type/id.", expression=name)
    return {"resource_type": resource_type, "resource_id": resource_id}


class AuditEventTypeView(QuerysetSearchView):
    """The audit trail for systems with the audit scope. A client of the whole
    practice reads all of it; a client bound to a team reads the rows about its
    team's patients (rows that name a patient, every one of them the team's). Rows
    hold ids and codes, never PHI."""

    resource_type = "AuditEvent"
    audit_resource_type = "audit_event"
    audit_purpose_of_use = "HCOMPL"
    queryset = Patient.objects.none()
    search_table = {
        "patient": _reference_criteria("patient_id", "Patient"),
        "agent": _agent_criteria,
        "date": _date_criteria("recorded_at"),
        "entity": _entity_criteria,
    }
    sort_field = "recorded_at"

    def search_queryset(self, criteria):
        if "patient_id" in criteria:
            patient_id = self.required_patient(criteria)
            return compliance_selectors.patient_access_report(patient_id=patient_id)
        user = self.request.user
        if user.client.team_id is not None:
            visible = patient_selectors.patients_visible_to(user)
            return compliance_selectors.audit_events_only_about(patients=visible)
        return compliance_selectors.audit_events()

    def sort_key(self, event):
        # The shared cursor carries a UUID: the bigint id travels as UUID(int=id).
        return (event.recorded_at, uuid.UUID(int=event.pk))

    def row_patient_ids(self, row):
        return []  # the rows name patients by id; reading them reads no record

    def resource_of(self, row):
        return mapping.audit_event_resource(row)


def _user_ids_named(username):
    from django.contrib.auth import get_user_model

    return list(get_user_model().objects.filter(username=username).values_list("pk", flat=True)[:1])


# --- Bulk export ---------------------------------------------------------------------


class ExportKickOffView(FhirResourceView):
    """Patient/$export and Group/{id}/$export (FHIR Bulk Data, async): 202 with
    the status URL in Content-Location; the worker writes the files."""

    resource_type = "Patient"
    audit_resource_type = "fhir_export"
    queryset = Patient.objects.none()

    def get(self, request, group_id=None):
        if "respond-async" not in request.headers.get("Prefer", ""):
            raise errors.invalid("A bulk export runs asynchronously: send Prefer: respond-async.")
        for name in request.query_params:
            if name not in registry.EXPORT_PARAMS:
                raise errors.invalid(f"Unknown $export parameter {name!r}.", expression=name)
        output_format = request.query_params.get("_outputFormat")
        if output_format not in (None, "application/fhir+ndjson", "application/ndjson", "ndjson"):
            raise errors.invalid("Only NDJSON is written.", expression="_outputFormat")
        since = None
        if request.query_params.get("_since"):
            since = parse_datetime(request.query_params["_since"])
            if since is None or timezone.is_naive(since):
                raise errors.invalid(
                    "_since is an instant with its time zone.", expression="_since"
                )
        types = [t for t in request.query_params.get("_type", "").split(",") if t]
        team_id = None
        client = request.user.client
        if group_id is not None:
            try:
                team_id = int(group_id)
            except ValueError:
                raise errors.invalid("A Group id is a team's number.", expression="id") from None
            if (
                client.team_id not in (None, team_id)
                or not Team.objects.filter(pk=team_id).exists()
            ):
                raise errors.not_found("No such Group among those this client may export.")
        try:
            job = services.export_job_start(
                client=client,
                grant=request.user.fhir_grant,
                team_id=team_id,
                types=types,
                since=since,
                request_url=request.build_absolute_uri(),
                request=request,
            )
        except services.UnknownExportType as unknown:
            raise errors.invalid(str(unknown), expression="_type") from None
        except services.ExportRefused as refused:
            raise errors.forbidden(str(refused)) from None
        self._audit_resource_id = str(job.pk)
        response = Response(status=status.HTTP_202_ACCEPTED)
        response["Content-Location"] = request.build_absolute_uri(f"/fhir/$export-status/{job.pk}")
        return response


def _own_job(request, job_id):
    from fhir.models import ExportJob

    job = ExportJob.objects.filter(
        pk=_uuid(job_id, expression="id"),
        api_client=request.user.client,
        expires_at__gt=timezone.now(),
    ).first()
    if job is None:
        raise errors.not_found("No such export of this client (or it expired).")
    return job


class ExportStatusView(FhirResourceView):
    resource_type = "Patient"
    audit_resource_type = "fhir_export"
    queryset = Patient.objects.none()

    def get(self, request, resource_id):
        from fhir.models import ExportJob

        job = _own_job(request, resource_id)
        if job.status in (ExportJob.Status.ACCEPTED, ExportJob.Status.RUNNING):
            response = Response(status=status.HTTP_202_ACCEPTED)
            response["X-Progress"] = job.progress or job.status
            response["Retry-After"] = "2"
            return response
        if job.status == ExportJob.Status.FAILED:
            raise errors.FhirError(
                f"The export failed ({job.error}); start a new one.",
                http_status=status.HTTP_500_INTERNAL_SERVER_ERROR,
                code="exception",
            )
        base = request.build_absolute_uri(f"/fhir/$export-file/{job.pk}/")
        manifest = {
            "transactionTime": job.created_at.isoformat(),
            "request": job.request_url,
            "requiresAccessToken": True,
            "output": [
                {"type": item["type"], "url": base + item["file"], "count": item["count"]}
                for item in job.output
            ],
            "error": [],
        }
        response = Response(manifest)
        response["Expires"] = job.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return response


class ExportFileView(FhirResourceView):
    resource_type = "Patient"
    audit_resource_type = "fhir_export"
    queryset = Patient.objects.none()

    def get(self, request, resource_id, file_name):
        job = _own_job(request, resource_id)
        item = next((i for i in job.output if i["file"] == file_name), None)
        if item is None:
            raise errors.not_found("No such file in this export.")
        path = services.export_file_path(job, item["type"])
        self.audit(file=file_name)
        response = FileResponse(path.open("rb"), content_type="application/fhir+ndjson")
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, FileResponse):
            return response
        return super().finalize_response(request, response, *args, **kwargs)


# --- Subscription ------------------------------------------------------------------------


class SubscriptionTypeView(FhirResourceView):
    """Create an R4 rest-hook Subscription (criteria Communication, optionally
    ?patient=Patient/{id}). The create response carries the signing secret once."""

    resource_type = "Subscription"
    audit_resource_type = "fhir_subscription"
    queryset = Patient.objects.none()

    def post(self, request):
        if not request.user.fhir_grant.allows("Communication", "r"):
            raise errors.forbidden("Subscribing to Communications needs system/Communication.rs.")
        resource = self.parsed_resource(FhirSubscription)
        channel = resource.channel
        if channel.type != "rest-hook" or not channel.endpoint:
            raise errors.invalid(
                "Only rest-hook channels with an endpoint are served.",
                expression="Subscription.channel",
            )
        try:
            subscription = services.subscription_create(
                client=request.user.client,
                principal=request.user,
                criteria=resource.criteria,
                endpoint=channel.endpoint,
                with_payload=bool(channel.payload),
            )
        except services.SubscriptionRefused as refused:
            raise errors.invalid(str(refused), expression="Subscription.criteria") from None
        self.audit(resource_id=subscription.pk)
        response = Response(
            mapping.subscription_resource(subscription, with_secret=True),
            status=status.HTTP_201_CREATED,
        )
        response["Location"] = request.build_absolute_uri(f"/fhir/Subscription/{subscription.pk}")
        return response


class SubscriptionInstanceView(FhirResourceView):
    resource_type = "Subscription"
    audit_resource_type = "fhir_subscription"
    queryset = Patient.objects.none()

    def _own(self, resource_id):
        from fhir.models import Subscription

        subscription = Subscription.objects.filter(
            pk=_uuid(resource_id, expression="id"), api_client=self.request.user.client
        ).first()
        if subscription is None:
            raise errors.not_found()
        return subscription

    def get(self, request, resource_id):
        return Response(mapping.subscription_resource(self._own(resource_id)))

    def delete(self, request, resource_id):
        from fhir.models import Subscription

        subscription = self._own(resource_id)
        Subscription.objects.filter(pk=subscription.pk).update(status=Subscription.Status.OFF)
        return Response(status=status.HTTP_204_NO_CONTENT)
