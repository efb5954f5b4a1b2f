"""Anchoring the audit trail outside the database.

The hash chain (compliance.chain) shows that sealed rows were not edited, deleted
or reordered, but whoever can write the table can also insert a row that the
sealer then seals as genuine, or cut the chain's tail and leave a shorter chain
that still verifies. Two things the database never holds close both:

- Each row carries a MAC made by the application when it writes the row
  (compliance.chain.row_mac): HMAC-SHA256, under the first key of AUDIT_MAC_KEYS,
  of the row's canonical content (the hashed columns except the id, which the
  database assigns on insert). A row written in SQL has no valid MAC; a genuine
  row copied in SQL has a MAC that is already taken.
- After sealing, the sealer publishes a signed checkpoint (chain position, head
  hash, time) to a sink outside the database (AUDIT_CHECKPOINT_SINK: an
  append-only file or syslog). A chain shorter than the latest checkpoint, or
  whose row at the checkpoint's position has another hash, was cut or rewritten.

Keys rotate like the field keys: a new key goes first in AUDIT_MAC_KEYS and signs
from then on; the older ones stay in the ring, because rows are never rewritten and
their MACs keep the key id they were made with.
"""

import hashlib
import hmac
import json
import logging.handlers
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from compliance.models import AuditEvent
from contactcenter import crypto


def _digest(key, payload):
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    head_hash: str
    at: str
    key_id: str = ""
    signature: str = ""

    def payload(self):
        return f"{self.sequence}:{self.head_hash}:{self.at}".encode("ascii")

    def signed(self):
        keys = crypto.audit_mac_keys()
        key_id = next(iter(keys))
        return Checkpoint(
            sequence=self.sequence,
            head_hash=self.head_hash,
            at=self.at,
            key_id=key_id,
            signature=_digest(keys[key_id], self.payload()),
        )

    def signature_valid(self):
        key = crypto.audit_mac_keys().get(self.key_id)
        return key is not None and hmac.compare_digest(_digest(key, self.payload()), self.signature)

    def to_line(self):
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_line(cls, line):
        values = json.loads(line)
        return cls(
            sequence=int(values["sequence"]),
            head_hash=str(values["head_hash"]),
            at=str(values["at"]),
            key_id=str(values["key_id"]),
            signature=str(values["signature"]),
        )


class FileSink:
    """One JSON line per checkpoint, appended. Put the file where the database's
    administrators cannot write (another host's mount, `chattr +a`), and ship it to
    object storage with a retention lock (S3 Object Lock in compliance mode) for
    the copy nobody can shorten."""

    def __init__(self, path):
        self.path = Path(path)

    def publish(self, checkpoint):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="ascii") as sink:
            sink.write(checkpoint.to_line() + "\n")
            sink.flush()

    def latest(self):
        """The last checkpoint whose line parses, or None (a torn last line from a
        crash mid-write is skipped)."""
        if not self.path.exists():
            return None
        with open(self.path, encoding="ascii", errors="replace") as sink:
            lines = sink.read().splitlines()
        for line in reversed(lines):
            try:
                return Checkpoint.from_line(line)
            except (ValueError, KeyError, TypeError):
                continue
        return None


class SyslogSink:
    """Each checkpoint as one syslog message (facility auth), to the local
    /dev/log or a remote collector over UDP. A syslog sink cannot be read back:
    verify against the collector's copy with `verify_audit_chain --checkpoints`."""

    def __init__(self, address):
        self.handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH
        )

    def publish(self, checkpoint):
        record = logging.LogRecord(
            "contactcenter.audit_checkpoint",
            logging.INFO,
            __file__,
            0,
            "contactcenter-audit-checkpoint %s",
            (checkpoint.to_line(),),
            None,
        )
        self.handler.emit(record)

    def latest(self):
        return None


def checkpoint_sink(url=None):
    url = url or settings.AUDIT_CHECKPOINT_SINK
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path:
        return FileSink(parts.path)
    if parts.scheme == "syslog":
        if parts.hostname:
            return SyslogSink((parts.hostname, parts.port or 514))
        return SyslogSink("/dev/log")
    raise ImproperlyConfigured(
        f"AUDIT_CHECKPOINT_SINK must be file:///path, syslog:// or syslog://host:port: {url!r}"
    )


def checkpoint_publish(*, sequence, head_hash, sink=None):
    checkpoint = Checkpoint(
        sequence=sequence, head_hash=head_hash, at=timezone.now().isoformat()
    ).signed()
    (sink or checkpoint_sink()).publish(checkpoint)
    return checkpoint


def checkpoint_publish_head(*, sink=None):
    """Publish the sealed chain's head, if there is one."""
    head = (
        AuditEvent.objects.filter(chain_position__isnull=False)
        .order_by("-chain_position")
        .values_list("chain_position", "hash")
        .first()
    )
    if head is None:
        return None
    return checkpoint_publish(sequence=head[0], head_hash=head[1], sink=sink)
