"""The hash chain over the audit trail: sealing and verification.

Writers only INSERT (compliance.services). A sealer, the only contender for its
lock, later gives each committed unsealed row, in id order, the next chain
position and

    hash = SHA-256(prev_hash + canonical JSON of the row's content columns)

where prev_hash is the hash of the row one position before (GENESIS_HASH for the
first). A transaction that commits late leaves a row with a lower id than rows
already sealed; it is sealed by a later run at a higher position, never skipped.

The verifier walks the chain in position order and names the first row whose
content no longer matches its hash ("edited"), whose position skips ("deleted"),
whose prev_hash does not continue the chain ("reordered"), or which joined the
chain long after its own timestamp ("inserted": a backdated row).

Anyone who can rewrite the table and the tail of the chain can also recompute the
hashes, so the head hash that verification prints is worth recording elsewhere.
"""

import hashlib
import hmac
import json
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, timedelta

from django.db import connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent
from contactcenter import crypto

GENESIS_HASH = "0" * 64

# Version 1 of the hashed content. Adding a column to AuditEvent means deciding
# whether it is hashed; hashing it changes the digest of every existing row, so
# that needs a new format version rather than an edit of this tuple.
HASHED_FIELDS = (
    "id",
    "recorded_at",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "api_client_id",
    "api_client_name",
    "action",
    "resource_type",
    "resource_id",
    "patient_ids",
    "outcome",
    "http_status",
    "purpose_of_use",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
)

EDITED = "edited"
DELETED = "deleted"
REORDERED = "reordered"
INSERTED = "inserted"
# Anchoring (compliance.anchoring): a row the application did not write, a copy of
# one it did, and a chain shorter than, or different from, its latest checkpoint.
FORGED = "forged"
COPIED = "copied"
TRUNCATED = "truncated"
REWRITTEN = "rewritten"

# Longer than any transaction that writes audit rows is expected to stay open; a
# row that joins the chain later than this after its own timestamp was backdated.
DEFAULT_GRACE = timedelta(minutes=15)

# pg_advisory_xact_lock key that only sealers take ("auditchn" in ASCII).
_SEAL_LOCK_KEY = 0x617564697463686E

_VERIFY_CHUNK_SIZE = 2000

# The one UPDATE the append-only triggers let through (see migration 0003).
_SEAL_UPDATE = (
    "UPDATE compliance_auditevent"
    " SET chain_position = %s, prev_hash = %s, hash = %s, sealed_at = %s"
    " WHERE id = %s"
)


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    count: int
    head_hash: str
    head_position: int | None
    complete: bool = True
    broken_id: int | None = None
    broken_position: int | None = None
    reason: str = ""
    detail: str = ""
    unsigned: int = 0


def canonical_content(content, *, fields=HASHED_FIELDS) -> bytes:
    """The bytes hashed for one row: sorted keys, no spaces, UTC ISO timestamps."""
    values = {name: content[name] for name in fields}
    values["recorded_at"] = values["recorded_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode("ascii")


def event_hash(*, prev_hash: str, content) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_content(content)).hexdigest()


# The row MAC covers what the hash covers except the id, which the database assigns
# after the application has made the MAC (see compliance.anchoring).
MAC_FIELDS = tuple(name for name in HASHED_FIELDS if name != "id")


def _mac_digest(key, content):
    return hmac.new(key, canonical_content(content, fields=MAC_FIELDS), hashlib.sha256).hexdigest()


def row_mac(content) -> str:
    """`<key id>:<hex HMAC-SHA256>` of a row's content under the first AUDIT_MAC_KEYS key."""
    keys = crypto.audit_mac_keys()
    key_id = next(iter(keys))
    return f"{key_id}:{_mac_digest(keys[key_id], content)}"


def row_mac_valid(content, mac) -> bool:
    key_id, _, digest = (mac or "").partition(":")
    key = crypto.audit_mac_keys().get(key_id)
    return key is not None and hmac.compare_digest(_mac_digest(key, content), digest)


def seal_pending(*, batch_size=1000) -> int:
    """Seal every committed unsealed row, one transaction per batch; return how many."""
    sealed = 0
    while True:
        count = _seal_batch(batch_size=batch_size)
        sealed += count
        if count < batch_size:
            return sealed


def _seal_batch(*, batch_size):
    with transaction.atomic(), connection.cursor() as cursor:
        # Writers never take this lock. SQLite needs none: its write transaction
        # (IMMEDIATE in our settings) already excludes a second sealer.
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK_KEY])
        head = (
            AuditEvent.objects.filter(chain_position__isnull=False)
            .order_by("-chain_position")
            .values_list("chain_position", "hash")
            .first()
        )
        position, prev_hash = head if head else (0, GENESIS_HASH)
        pending = (
            AuditEvent.objects.filter(chain_position__isnull=True)
            .order_by("id")
            .values_list(*HASHED_FIELDS)[:batch_size]
        )
        sealed_at = connection.ops.adapt_datetimefield_value(timezone.now())
        params = []
        for values in pending:
            content = dict(zip(HASHED_FIELDS, values, strict=True))
            position += 1
            digest = event_hash(prev_hash=prev_hash, content=content)
            params.append((position, prev_hash, digest, sealed_at, content["id"]))
            prev_hash = digest
        if params:
            cursor.executemany(_SEAL_UPDATE, params)
    return len(params)


def verify_chain(
    *, limit=None, time_budget_seconds=None, grace=DEFAULT_GRACE, checkpoint=None, progress=None
) -> VerificationResult:
    """Walk the sealed chain in position order, streaming, and report the first break.

    Every row must carry a valid MAC of its own (rows older than the first one with
    a MAC were written before MACs existed). With `checkpoint` (the latest one the
    sealer published outside the database), a complete walk must reach its position
    with its head hash. `limit` and `time_budget_seconds` stop early with
    `complete=False`; rows not reached are not judged. `progress`, when given, is
    called with the count of rows verified so far after each chunk of rows.
    """
    deadline = None if time_budget_seconds is None else time.monotonic() + time_budget_seconds
    walk = _ChainWalk(grace=grace)
    complete = True
    # One transaction: the server-side cursor then streams without being
    # materialised WITH HOLD, and reads one snapshot of the chain.
    with transaction.atomic():
        query = (
            AuditEvent.objects.filter(chain_position__isnull=False)
            .order_by("chain_position")
            .values_list(*HASHED_FIELDS, "mac", "chain_position", "prev_hash", "hash")
        )
        if limit is not None:
            query = query[:limit]
        with closing(query.iterator(chunk_size=_VERIFY_CHUNK_SIZE)) as rows:
            for values in rows:
                broken = walk.step(values)
                if broken:
                    return broken
                if progress is not None and walk.count % _VERIFY_CHUNK_SIZE == 0:
                    progress(walk.count)
                if deadline is not None and time.monotonic() > deadline:
                    complete = False
                    break
        if complete and limit is not None and walk.count == limit:
            complete = not AuditEvent.objects.filter(chain_position__gt=walk.head_position).exists()
        if complete:
            broken = walk.check_unsealed() or walk.check_checkpoint(checkpoint)
            if broken:
                return broken
    return walk.result(ok=True, complete=complete)


class _ChainWalk:
    """The state of one verification pass: the last good row and what it implies."""

    def __init__(self, *, grace):
        self.grace = grace
        self.count = 0
        self.head_hash = GENESIS_HASH
        self.head_position = None
        self.newest_recorded = None
        self.unsigned = 0
        self.macs_seen = set()

    def result(self, **kwargs):
        return VerificationResult(
            unsigned=self.unsigned,
            count=self.count,
            head_hash=self.head_hash,
            head_position=self.head_position,
            **kwargs,
        )

    def step(self, values):
        content = dict(zip(HASHED_FIELDS, values, strict=False))
        mac, position, prev_hash, stored_hash = values[-4:]
        reason, detail = _judge(
            content=content,
            position=position,
            prev_hash=prev_hash,
            stored_hash=stored_hash,
            expected_position=(self.head_position or 0) + 1,
            expected_prev_hash=self.head_hash,
            newest_recorded=self.newest_recorded,
            grace=self.grace,
        )
        if not reason:
            reason, detail = self._judge_mac(content, mac)
        if reason:
            return self.result(
                ok=False,
                broken_id=content["id"],
                broken_position=position,
                reason=reason,
                detail=detail,
            )
        self.count += 1
        self.head_hash, self.head_position = stored_hash, position
        if self.newest_recorded is None or content["recorded_at"] > self.newest_recorded:
            self.newest_recorded = content["recorded_at"]
        return None

    def _judge_mac(self, content, mac):
        if not mac and not self.macs_seen:
            self.unsigned += 1  # written before row MACs existed
            return "", ""
        if not row_mac_valid(content, mac):
            return FORGED, (
                "it has no valid MAC: it was not written by the application (a row "
                "inserted or altered in SQL)"
            )
        # A 16-byte prefix of each MAC is enough to recognise a copy in memory.
        fingerprint = mac.rpartition(":")[2][:32]
        if fingerprint in self.macs_seen:
            return COPIED, "its MAC is that of an earlier event: a genuine row copied in SQL"
        self.macs_seen.add(fingerprint)
        return "", ""

    def check_checkpoint(self, checkpoint):
        """The chain against the latest checkpoint published outside the database."""
        if checkpoint is None:
            return None
        if not checkpoint.signature_valid():
            return self.result(
                ok=False,
                reason=FORGED,
                detail=f"the checkpoint at position {checkpoint.sequence} has no valid signature",
            )
        head = self.head_position or 0
        if head < checkpoint.sequence:
            return self.result(
                ok=False,
                broken_position=head + 1,
                reason=TRUNCATED,
                detail=(
                    f"positions {head + 1} to {checkpoint.sequence} are missing: the checkpoint "
                    f"of {checkpoint.at} published position {checkpoint.sequence}, the chain "
                    f"ends at {head} (its tail was cut)"
                ),
            )
        anchored = (
            AuditEvent.objects.filter(chain_position=checkpoint.sequence)
            .values_list("id", "hash")
            .first()
        )
        if anchored[1] != checkpoint.head_hash:
            return self.result(
                ok=False,
                broken_id=anchored[0],
                broken_position=checkpoint.sequence,
                reason=REWRITTEN,
                detail=(
                    f"its hash is not the head hash the checkpoint of {checkpoint.at} "
                    "published: the chain up to it was rebuilt"
                ),
            )
        return None

    def check_unsealed(self):
        # A late commit is sealed within seconds; an unsealed row far older than
        # the sealed events was inserted after the fact with an old timestamp.
        if self.newest_recorded is None:
            return None
        straggler = (
            AuditEvent.objects.filter(
                chain_position__isnull=True,
                recorded_at__lt=self.newest_recorded - self.grace,
            )
            .order_by("id")
            .values_list("id", "recorded_at")
            .first()
        )
        if straggler is None:
            return None
        return self.result(
            ok=False,
            broken_id=straggler[0],
            broken_position=None,
            reason=INSERTED,
            detail=(
                f"unsealed, recorded at {straggler[1].isoformat()}, more than {self.grace} "
                "before events already sealed"
            ),
        )


def _judge(
    *,
    content,
    position,
    prev_hash,
    stored_hash,
    expected_position,
    expected_prev_hash,
    newest_recorded,
    grace,
):
    if position != expected_position:
        return DELETED, f"positions {expected_position} to {position - 1} are missing"
    if prev_hash != expected_prev_hash:
        return REORDERED, "its prev_hash is not the hash of the event one position before"
    if stored_hash != event_hash(prev_hash=prev_hash, content=content):
        return EDITED, "its content does not match its hash"
    if newest_recorded is not None and content["recorded_at"] < newest_recorded - grace:
        return INSERTED, (
            f"recorded at {content['recorded_at'].isoformat()}, more than {grace} "
            "before events sealed ahead of it"
        )
    return "", ""
