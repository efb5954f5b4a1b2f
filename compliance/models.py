import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from contactcenter.fields import EncryptedCharField, EncryptedTextField


class AuditTrailImmutableError(Exception):
    """Raised before the database would reject a change to an audit row."""


class AuditEventQuerySet(models.QuerySet):
    # The database triggers are the guarantee; refusing here names the mistake in
    # Python instead of surfacing as a database error from deep inside a request.
    def update(self, **kwargs):
        raise AuditTrailImmutableError("Audit events are append-only; they cannot be updated.")

    def delete(self):
        raise AuditTrailImmutableError("Audit events are append-only; they cannot be deleted.")


class AuditEvent(models.Model):
    """One access to or change of data, mapped one to one onto FHIR AuditEvent.

    Rows are written once by `compliance.services.audit_record` and never changed,
    except for the single sealing update that `compliance.chain.seal_pending` makes
    to the chain columns; database triggers enforce both.

    No column may hold PHI: callers pass ids and codes only, never names, phone
    numbers, message text or free-text reasons. Actors and API clients are copied
    by value without foreign keys, because audit rows outlive the users and keys
    they name.
    """

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        READ = "read", "Read"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        EXECUTE = "execute", "Execute"
        LOGIN = "login", "Login"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOGOUT = "logout", "Logout"
        LOCKOUT = "lockout", "Lockout"
        DENIED = "denied", "Denied"
        EXPORT = "export", "Export"
        BREAK_GLASS = "break_glass", "Break-glass access"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        DENIED = "denied", "Denied"
        ERROR = "error", "Error"

    class PurposeOfUse(models.TextChoices):
        """A subset of the HL7 v3 PurposeOfUse codes (FHIR AuditEvent.purposeOfEvent)."""

        TREAT = "TREAT", "Treatment"
        ETREAT = "ETREAT", "Emergency treatment (break-glass)"
        COC = "COC", "Coordination of care"
        HOPERAT = "HOPERAT", "Healthcare operations"
        HPAYMT = "HPAYMT", "Healthcare payment"
        HRESCH = "HRESCH", "Healthcare research"
        PUBHLTH = "PUBHLTH", "Public health"
        HSYSADMIN = "HSYSADMIN", "System administration"
        HCOMPL = "HCOMPL", "Compliance"
        HLEGAL = "HLEGAL", "Legal"
        PATRQT = "PATRQT", "Patient requested"

    id = models.BigAutoField(primary_key=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=32, blank=True)
    api_client_id = models.BigIntegerField(null=True, blank=True)
    api_client_name = models.CharField(max_length=200, blank=True)

    action = models.CharField(max_length=16, choices=Action.choices)
    resource_type = models.CharField(max_length=64, blank=True)
    resource_id = models.CharField(max_length=128, blank=True)
    patient_ids = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    purpose_of_use = models.CharField(
        max_length=16, choices=PurposeOfUse.choices, default=PurposeOfUse.TREAT
    )

    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict, blank=True)

    # NULL, not "", means "not sealed yet": the triggers and the sealer test for it.
    chain_position = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    sealed_at = models.DateTimeField(null=True, blank=True)
    # "<key id>:<hex HMAC>" made by the application as it writes the row, with a key
    # the database never holds (compliance.chain.row_mac); NULL on rows written
    # before row MACs existed. Nullable without a default, so adding it is an
    # ALTER TABLE ADD COLUMN on SQLite too, not a rebuild that would drop the
    # append-only triggers.
    mac = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        # (recorded_at, id) also serves every query on recorded_at alone, so there
        # is no single-column index: each index is paid for on every audited request.
        indexes = [
            models.Index(fields=["recorded_at", "id"], name="audit_recorded_idx"),
            models.Index(fields=["actor_user_id", "recorded_at"], name="audit_actor_idx"),
            models.Index(fields=["resource_type", "resource_id"], name="audit_resource_idx"),
            models.Index(fields=["action", "recorded_at"], name="audit_action_idx"),
            models.Index(
                fields=["id"], condition=Q(chain_position__isnull=True), name="audit_unsealed_idx"
            ),
        ]

    def __str__(self):
        return f"{self.action} {self.resource_type}:{self.resource_id} by {self.actor_username}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditTrailImmutableError("Audit events are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditTrailImmutableError("Audit events are append-only; they cannot be deleted.")


class BreakGlassGrant(models.Model):
    """Emergency read access to one patient outside the user's teams, for a short
    time, with the reason the user gave; every grant waits for a compliance review.

    The patient is named by id only: compliance never loads a PHI model. The
    reason and the review comment are free text that may describe the patient's
    condition, so they are encrypted like any other PHI column.
    """

    class ReviewOutcome(models.TextChoices):
        APPROPRIATE = "appropriate", "Appropriate"
        INAPPROPRIATE = "inappropriate", "Inappropriate"
        NEEDS_FOLLOW_UP = "needs_follow_up", "Needs follow-up"

    REASON_MIN_LENGTH = 20

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="break_glass_grants"
    )
    patient_id = models.UUIDField()
    reason = EncryptedTextField()
    granted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="break_glass_reviews",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices, blank=True)
    review_comment = EncryptedTextField(blank=True, default="")

    class Meta:
        indexes = [
            # The EXISTS that patients_visible_to adds to every patient query.
            models.Index(fields=["user", "patient_id", "expires_at"], name="breakglass_access_idx"),
            models.Index(fields=["-granted_at", "-id"], name="breakglass_queue_idx"),
            models.Index(
                fields=["-granted_at", "-id"],
                condition=Q(reviewed_at__isnull=True),
                name="breakglass_unreviewed_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("granted_at")),
                name="breakglass_expires_after_grant",
            ),
            models.CheckConstraint(
                condition=Q(reviewed_at__isnull=True, review_outcome="")
                | Q(reviewed_at__isnull=False, reviewed_by__isnull=False) & ~Q(review_outcome=""),
                name="breakglass_review_complete",
            ),
        ]

    def __str__(self):
        return f"break-glass {self.pk} by user {self.user_id} on patient {self.patient_id}"

    def is_active(self, *, at=None):
        return self.expires_at > (at or timezone.now())


class Disclosure(models.Model):
    """One disclosure of a patient's PHI outside treatment, payment and operations,
    kept for the accounting a patient may ask for (45 CFR 164.528): when, to whom
    (name and address), what, and why. All four are free text about the patient,
    so they are encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient_id = models.UUIDField()
    disclosed_at = models.DateTimeField()
    recipient_name = EncryptedCharField(max_length=200)
    recipient_address = EncryptedTextField(blank=True, default="")
    description = EncryptedTextField()
    purpose = EncryptedTextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    api_client = models.ForeignKey(
        "contactcenter.ApiClient",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["patient_id", "-disclosed_at", "-id"], name="disclosure_patient_idx"
            )
        ]

    def __str__(self):
        return f"disclosure {self.pk} of patient {self.patient_id}"


class AnomalyFinding(models.Model):
    """One unusual pattern of one user on one day (in the practice's time zone),
    found by compliance.services.anomalies_detect. Users are copied by value, like
    in audit rows, so findings outlive the accounts they name."""

    class Kind(models.TextChoices):
        VOLUME = "volume", "Unusual number of patient records read"
        BREAK_GLASS_OUTSIDE_TEAM = "break_glass_outside_team", "Break-glass access"
        AFTER_HOURS = "after_hours", "Patient records read after hours"

    day = models.DateField()
    kind = models.CharField(max_length=32, choices=Kind.choices)
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150, blank=True)
    count = models.PositiveIntegerField()
    baseline = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Ids and codes only, no PHI.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "kind", "user_id"], name="anomaly_one_per_day_kind_user"
            )
        ]

    def __str__(self):
        return f"{self.day} {self.kind} user {self.user_id}: {self.count}"


class RetentionCheckpoint(models.Model):
    """How far the purge of one kind of data has got, so that a row is shredded
    once rather than again every night, and a purge cut short resumes.

    Every row dated before `purged_before` was purged. A run under way (or cut
    short) also purged the rows dated before `run_cutoff` whose primary key is at
    most `run_after_pk`; it walks the rows in primary-key order."""

    kind = models.CharField(max_length=32, primary_key=True)
    purged_before = models.DateTimeField(null=True, blank=True)
    run_cutoff = models.DateTimeField(null=True, blank=True)
    run_after_pk = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.kind} purged before {self.purged_before}"
