import django_filters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from channels_app import accounts, selectors, services
from channels_app.models import (
    Callback,
    CannedResponse,
    ChannelAccount,
    Conversation,
    Interaction,
)
from channels_app.serializers import (
    CallbackDialSerializer,
    CallbackSerializer,
    CallerContextSerializer,
    ChannelAccountSerializer,
    ConversationChangeSerializer,
    ConversationDetailSerializer,
    ConversationMessageSerializer,
    ImapCheckSerializer,
    InboxCountsSerializer,
    InboxRowSerializer,
    MessageSerializer,
    PortalMessageCreatedSerializer,
    PortalMessageSerializer,
    QueueEntrySerializer,
    ReplySerializer,
    delivery_attempt,
    inbox_row,
    message,
)
from compliance.mixins import AuditedViewMixin
from contactcenter import roles
from contactcenter.errors import ApiError
from contactcenter.filters import MAX_ID, IdFilter, query_cleaned
from contactcenter.idempotency import IdempotentCreateMixin
from contactcenter.keyset import KeysetPagination
from contactcenter.permissions import role_permission
from patients.models import Channel, Patient
from patients.selectors import patient_visible_with_team, patients_visible_to

# Staff who work conversations; compliance officers and admins see no messages.
CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)


class PortalMessageView(IdempotentCreateMixin, AuditedViewMixin, generics.GenericAPIView):
    """A message a patient wrote in the portal, delivered by the portal system."""

    serializer_class = PortalMessageSerializer
    queryset = Interaction.objects.none()
    audit_resource_type = "interaction"
    audit_patient_field = "patient_id"
    required_scopes = {"POST": "portal:write"}

    def get_permissions(self):
        # On top of the default ScopedAccess, which checks the key's scope;
        # replacing it (permission_classes) would let any key post.
        return [*super().get_permissions(), role_permission(roles.INTEGRATION)()]

    @extend_schema(
        responses={201: PortalMessageCreatedSerializer, 200: PortalMessageCreatedSerializer}
    )
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        patient = patient_visible_with_team(request.user, patient_id=data["patient"])
        if patient is None or patient.merged_into_id:
            raise NotFound("No such patient.")
        self.audit(patient_ids=[patient.pk])
        with transaction.atomic():
            conversation = (
                services.open_conversation_locked(
                    channel=Channel.PORTAL, patient=patient.pk, thread_key=data["thread_id"]
                )
                if data["thread_id"]
                else None
            )
            opened = conversation is None
            if opened:
                conversation = services.conversation_open(
                    channel=Channel.PORTAL,
                    team=patient.team,
                    account=next(iter(accounts.accounts_of_kind(Channel.PORTAL)), None),
                    patient=patient,
                    subject=data["subject"],
                    thread_key=data["thread_id"],
                )
            ingested = services.inbound_record(
                channel=Channel.PORTAL,
                address="",
                body=data["body"],
                provider_id=data["message_id"],
                occurred_at=timezone.now(),
                source="portal_api",
                raw_payload={**data, "patient": str(data["patient"])},
                conversation=conversation,
                # A repeated delivery (also one racing the first): the conversation
                # opened for it would stay empty in the inbox, so it is undone.
                opened=opened,
            )
        interaction = ingested.interaction
        self.audit(resource_id=interaction.pk)
        return Response(
            {
                "interaction": interaction.pk,
                "conversation": interaction.conversation_id,
                "created": ingested.created,
            },
            status=status.HTTP_201_CREATED if ingested.created else status.HTTP_200_OK,
        )


# --- Unified inbox, conversations, messages, timeline ------------------------------

_PRIORITIES = {label: value for value, label in Conversation.Priority.choices}


class InboxFilter(django_filters.FilterSet):
    """Validates and documents the inbox filters; selectors.inbox_page applies them."""

    status = django_filters.MultipleChoiceFilter(
        choices=Conversation.Status.choices,
        method="noop",
        help_text="Repeatable; default open and pending.",
    )
    assignee = django_filters.CharFilter(method="noop", help_text='"me", "unassigned" or a user id')
    team = IdFilter(method="noop")
    channel = django_filters.ChoiceFilter(choices=Channel.choices, method="noop")
    priority = django_filters.ChoiceFilter(choices=[(k, k) for k in _PRIORITIES], method="noop")
    patient = django_filters.UUIDFilter(method="noop")
    label = django_filters.CharFilter(method="noop")
    escalated = django_filters.BooleanFilter(method="noop")
    unmatched = django_filters.BooleanFilter(method="noop", help_text="No patient yet.")
    updated_since = django_filters.IsoDateTimeFilter(method="noop")
    sort = django_filters.ChoiceFilter(
        choices=[("last_interaction", "last_interaction"), ("sla_due", "sla_due")],
        method="noop",
        help_text="last_interaction (newest first, default) or sla_due (soonest first; "
        "only conversations that owe a response).",
    )

    def noop(self, queryset, name, value):
        return queryset


def _visible_patient_ids(user, conversations):
    """Patients of these conversations whose names the user may see."""
    patient_ids = {c.patient_id for c in conversations if c.patient_id is not None}
    if not patient_ids:
        return set()
    return set(patients_visible_to(user).filter(pk__in=patient_ids).values_list("pk", flat=True))


class ConversationListView(AuditedViewMixin, generics.ListAPIView):
    """The unified inbox across every channel."""

    serializer_class = InboxRowSerializer
    filterset_class = InboxFilter
    pagination_class = KeysetPagination
    queryset = Conversation.objects.none()
    audit_resource_type = "conversation"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]

    def list(self, request):
        data = query_cleaned(InboxFilter, request, Conversation)
        assignee = data.get("assignee") or None
        if assignee not in (None, "me", "unassigned") and not (
            assignee.isdecimal() and 0 < int(assignee) <= MAX_ID
        ):
            raise ValidationError({"assignee": ['"me", "unassigned" or a user id.']})
        filters = selectors.InboxFilters(
            statuses=tuple(data.get("status") or Conversation.ACTIVE_STATUSES),
            assignee=assignee,
            team_id=data.get("team"),
            channel=data.get("channel") or None,
            priority=_PRIORITIES[data["priority"]] if data.get("priority") else None,
            patient_id=data.get("patient"),
            label=data.get("label") or None,
            escalated=data.get("escalated"),
            unmatched=data.get("unmatched"),
            updated_since=data.get("updated_since"),
            sort=data.get("sort") or "last_interaction",
        )
        paginator = self.paginator
        page = selectors.inbox_page(
            user=request.user, filters=filters, page=paginator.page_request(request)
        )
        self.audit(patient_ids=[row["patient_id"] for row in page.rows])
        return Response(paginator.body(request, page, [inbox_row(row) for row in page.rows]))


class InboxCountsView(AuditedViewMixin, generics.GenericAPIView):
    serializer_class = InboxCountsSerializer
    queryset = Conversation.objects.none()
    audit_resource_type = "inbox_counts"
    permission_classes = [role_permission(*CARE_ROLES)]

    def get(self, request):
        return Response(selectors.inbox_counts(user=request.user))


class ConversationDetailView(AuditedViewMixin, generics.RetrieveAPIView):
    serializer_class = ConversationDetailSerializer
    queryset = Conversation.objects.none()
    audit_resource_type = "conversation"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]

    def get_queryset(self):
        return selectors.conversations_visible_to(self.request.user).select_related(
            "patient", "assignee", "team"
        )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        conversation = getattr(self, "_object", None)
        if conversation is not None:
            context["visible_patient_ids"] = _visible_patient_ids(self.request.user, [conversation])
        return context

    def get_object(self):
        self._object = super().get_object()
        return self._object

    @extend_schema(request=ConversationChangeSerializer, responses=ConversationDetailSerializer)
    def patch(self, request, pk):
        conversation = self.get_object()
        data = ConversationChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if "priority" in changes:
            changes["priority"] = _PRIORITIES[changes["priority"]]
        if "assignee" in changes and changes["assignee"] is not None:
            changes["assignee"] = (
                get_user_model().objects.filter(pk=changes["assignee"], is_active=True).first()
            )
            if changes["assignee"] is None:
                raise ValidationError({"assignee": ["No such staff user."]})
        if "patient" in changes:
            patient = patients_visible_to(request.user).filter(pk=changes["patient"]).first()
            if patient is None:
                raise ValidationError({"patient": ["No such patient among those you may see."]})
            changes["patient"] = patient
            self.audit(patient_ids=[patient.pk])
        try:
            services.conversation_change(
                conversation=conversation,
                actor=request.user,
                actor_is_supervisor=roles.has_role(request.user, roles.SUPERVISOR),
                changes=changes,
            )
        except services.ConversationChangeRefused as refused:
            status_code = 409 if refused.code == "invalid_transition" else 400
            raise ApiError(
                str(refused),
                code=refused.code,
                status_code=status_code,
                details={refused.field: [str(refused)]} if refused.field else {},
            ) from None
        self._object = self.get_queryset().get(pk=conversation.pk)
        return Response(self.get_serializer(self._object).data)


def _conversation_or_404(request, conversation_id):
    conversation = selectors.conversation_get_visible(
        user=request.user, conversation_id=conversation_id
    )
    if conversation is None:
        raise NotFound()
    return conversation


def _render_canned(canned, conversation):
    try:
        return selectors.canned_response_text(canned=canned, conversation=conversation)
    except ValueError as exc:
        raise ValidationError({"canned_response": [str(exc)]}) from None


class ConversationMessagesView(IdempotentCreateMixin, AuditedViewMixin, generics.ListCreateAPIView):
    serializer_class = ConversationMessageSerializer
    queryset = Interaction.objects.none()
    audit_resource_type = "interaction"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]
    pagination_class = KeysetPagination

    def list(self, request, pk):
        conversation = _conversation_or_404(request, pk)
        self.audit(patient_ids=[conversation.patient_id], resource_id=conversation.pk)
        paginator = self.paginator
        page = selectors.conversation_messages_page(
            conversation=conversation, page=paginator.page_request(request)
        )
        attempts = selectors.delivery_attempts_by_interaction(
            interaction_ids=[row["id"] for row in page.rows]
        )
        results = [
            {
                **message(row),
                "delivery_attempts": [delivery_attempt(a) for a in attempts.get(row["id"], [])],
            }
            for row in page.rows
        ]
        return Response(paginator.body(request, page, results))

    @extend_schema(
        request=ReplySerializer,
        responses={
            201: ConversationMessageSerializer,
            409: OpenApiResponse(
                description="`stale_reply`: the patient wrote after `last_seen_interaction`; "
                "nothing was sent. `details.latest_interaction` is the newest inbound message."
            ),
        },
    )
    def post(self, request, pk):
        conversation = _conversation_or_404(request, pk)
        self.audit(patient_ids=[conversation.patient_id], resource_id=conversation.pk)
        data = ReplySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data.get("body")
        if data.validated_data.get("canned_response"):
            canned = CannedResponse.objects.filter(
                pk=data.validated_data["canned_response"], team=conversation.team
            ).first()
            if canned is None:
                raise ValidationError({"canned_response": ["No such canned response."]})
            body = _render_canned(canned, conversation)
        try:
            interaction, _created = services.reply_create(
                conversation=conversation,
                author=request.user,
                body=body,
                internal=data.validated_data["internal"],
                last_seen_interaction_id=data.validated_data.get("last_seen_interaction"),
            )
        except services.ReplyStale as stale:
            raise ApiError(
                str(stale),
                code=stale.code,
                status_code=status.HTTP_409_CONFLICT,
                details={"latest_interaction": str(stale.latest_interaction_id)},
            ) from None
        self.audit(resource_id=interaction.pk)
        interaction = selectors.conversation_messages(conversation=conversation).get(
            pk=interaction.pk
        )
        return Response(
            ConversationMessageSerializer(interaction).data, status=status.HTTP_201_CREATED
        )


class ConversationReadView(AuditedViewMixin, generics.GenericAPIView):
    queryset = Conversation.objects.none()
    audit_resource_type = "conversation"
    audit_action = "update"
    permission_classes = [role_permission(*CARE_ROLES)]

    @extend_schema(request=None, responses={204: None})
    def post(self, request, pk):
        conversation = _conversation_or_404(request, pk)
        self.audit(patient_ids=[conversation.patient_id], resource_id=conversation.pk)
        services.conversation_mark_read(conversation=conversation, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TimelineFilter(django_filters.FilterSet):
    channel = django_filters.ChoiceFilter(choices=Channel.choices, method="noop")
    direction = django_filters.ChoiceFilter(choices=Interaction.Direction.choices, method="noop")
    kind = django_filters.ChoiceFilter(choices=Interaction.Kind.choices, method="noop")
    since = django_filters.IsoDateTimeFilter(method="noop")
    until = django_filters.IsoDateTimeFilter(method="noop")

    def noop(self, queryset, name, value):
        return queryset


class PatientTimelineView(AuditedViewMixin, generics.ListAPIView):
    """Every interaction of the patient across channels, newest first."""

    serializer_class = MessageSerializer
    filterset_class = TimelineFilter
    pagination_class = KeysetPagination
    queryset = Interaction.objects.none()
    audit_resource_type = "timeline"
    audit_patient_field = "patient_id"
    required_scopes = {"GET": "timeline:read"}
    lookup_url_kwarg = "patient_id"

    def get_permissions(self):
        return [*super().get_permissions(), role_permission(*CARE_ROLES, roles.INTEGRATION)()]

    def _denied_patient_ids(self):
        # The URL names the patient: a refused look at an existing one is recorded
        # against that patient, for the compliance officer's access report.
        existing = Patient.objects.filter(pk=self._audit_resource_id)
        return [str(pk) for pk in existing.values_list("pk", flat=True)]

    def list(self, request, patient_id):
        data = query_cleaned(TimelineFilter, request, Interaction)
        filters = selectors.TimelineFilters(
            channel=data.get("channel") or None,
            direction=data.get("direction") or None,
            kind=data.get("kind") or None,
            since=data.get("since"),
            until=data.get("until"),
        )
        paginator = self.paginator
        page = selectors.timeline_page(
            user=request.user,
            patient_id=patient_id,
            filters=filters,
            page=paginator.page_request(request),
        )
        if page is None:
            raise NotFound()
        self.audit(patient_ids=[patient_id])
        return Response(paginator.body(request, page, [message(row) for row in page.rows]))


# --- The phone line: callbacks, team queues, the caller's context -------------------


def _callback_data(callback):
    return CallbackSerializer(callback).data


class CallbackDialView(AuditedViewMixin, generics.GenericAPIView):
    """An agent calls a patient back: Twilio dials the patient and, once they
    answer, rings the agent's phone. 202: dialling is under way (the callback's
    status moves to done, or back to pending if the patient does not answer)."""

    serializer_class = CallbackDialSerializer
    queryset = Callback.objects.none()
    audit_resource_type = "callback"
    permission_classes = [role_permission(*CARE_ROLES)]

    @extend_schema(responses={202: CallbackSerializer})
    def post(self, request, pk):
        callback = selectors.callback_get_visible(user=request.user, callback_id=pk)
        if callback is None:
            raise NotFound("No such callback.")
        self.audit(patient_ids=[callback.conversation.patient_id], resource_id=callback.pk)
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            callback = services.callback_dial_request(
                callback=callback,
                agent=request.user,
                agent_number=data.validated_data["agent_number"],
            )
        except services.CallbackRefused as refused:
            raise ApiError(str(refused), code=refused.code, status_code=409) from None
        return Response(_callback_data(callback), status=status.HTTP_202_ACCEPTED)


class TeamQueueView(generics.GenericAPIView):
    """A team's phone queue in order: callers on the line and callbacks at the
    place their call had. Ids and times only, no patient data."""

    serializer_class = QueueEntrySerializer
    queryset = Callback.objects.none()
    permission_classes = [role_permission(*CARE_ROLES)]
    pagination_class = None

    @extend_schema(responses=QueueEntrySerializer(many=True))
    def get(self, request, team_id):
        team_ids = selectors.team_ids_of(request.user) or []
        if team_id not in team_ids:
            raise NotFound("No such team among yours.")
        entries = selectors.team_queue(team_id=team_id)
        rows = [
            {**entry.__dict__, "position": position}
            for position, entry in enumerate(entries, start=1)
        ]
        return Response(self.get_serializer(rows, many=True).data)


class CallerContextView(AuditedViewMixin, generics.GenericAPIView):
    """Who is calling, for the agent about to answer a call (the workspace's
    patient panel): the matched patient, their open conversations and upcoming
    appointments, as far as the agent may see them. Nothing of this is said on
    the line; the agent verifies the caller first."""

    serializer_class = CallerContextSerializer
    queryset = Conversation.objects.none()
    audit_resource_type = "conversation"
    permission_classes = [role_permission(*CARE_ROLES)]

    def get(self, request, pk):
        conversation = selectors.conversation_get_visible(user=request.user, conversation_id=pk)
        if conversation is None:
            raise NotFound("No such conversation.")
        context = selectors.caller_context(user=request.user, conversation=conversation)
        if context["patient"] is not None:
            self.audit(patient_ids=[context["patient"].pk], resource_id=conversation.pk)
        return Response(self.get_serializer(context).data)


# --- Channel accounts (admin role) ------------------------------------------------


class _ConfigurationAudit(AuditedViewMixin):
    """Audited like every API call; a channel account concerns no patient."""

    audit_resource_type = "channel_account"
    audit_purpose_of_use = "HSYSADMIN"

    def _patient_id_of(self, obj):
        return None

    def _denied_patient_ids(self):
        return []


class ChannelAccountListView(_ConfigurationAudit, generics.ListCreateAPIView):
    """The practice's numbers, mailboxes and portal endpoints (admins only).
    Numbers are E.164; the secret is write-only."""

    serializer_class = ChannelAccountSerializer
    queryset = ChannelAccount.objects.select_related("team")
    permission_classes = [role_permission(roles.ADMIN)]
    ordering = ("id",)

    def filter_queryset(self, queryset):
        return queryset

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            account = services.channel_account_create(values=dict(serializer.validated_data))
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        self.audit(resource_id=account.pk)
        return Response(self.get_serializer(account).data, status=status.HTTP_201_CREATED)


class ChannelAccountDetailView(_ConfigurationAudit, generics.RetrieveUpdateAPIView):
    """One channel account (admins only). Its kind cannot change; a secret left out
    or empty keeps the stored one."""

    serializer_class = ChannelAccountSerializer
    queryset = ChannelAccount.objects.select_related("team")
    permission_classes = [role_permission(roles.ADMIN)]

    def update(self, request, *args, **kwargs):
        account = self.get_object()
        serializer = self.get_serializer(
            account, data=request.data, partial=kwargs.get("partial", False)
        )
        serializer.is_valid(raise_exception=True)
        try:
            account = services.channel_account_update(
                account=account, values=dict(serializer.validated_data)
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        return Response(self.get_serializer(account).data)


class ChannelAccountImapCheckView(_ConfigurationAudit, generics.GenericAPIView):
    """Connect to the mailbox's IMAP server, log in and open its folder, reading
    nothing: asked for on demand, since saving never checks the server."""

    queryset = ChannelAccount.objects.all()
    serializer_class = ImapCheckSerializer
    permission_classes = [role_permission(roles.ADMIN)]
    audit_action = "execute"

    @extend_schema(request=None, responses={200: ImapCheckSerializer})
    def post(self, request, pk):
        from channels_app.imap import imap_check

        account = self.get_object()
        if account.kind != Channel.EMAIL or not account.imap_host:
            raise ApiError(
                "This account is not a mailbox read over IMAP.",
                code="not_an_imap_mailbox",
            )
        reachable, error = imap_check(account=account)
        return Response({"reachable": reachable, "error": error})
