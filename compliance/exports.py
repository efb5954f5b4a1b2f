"""CSV exports of audit rows, streamed: memory stays flat however many rows match.

Rows come from a server-side cursor (`iterator(chunk_size=...)`) opened inside a
transaction, so PostgreSQL streams them instead of materialising the whole result
for a cursor WITH HOLD, and the CSV is written a chunk at a time.
"""

import csv
import io
import json
from contextlib import closing

from django.db import transaction

from compliance.chain import HASHED_FIELDS

CHUNK_SIZE = 2000

# What an exported audit row shows: every hashed column plus its place in the chain.
AUDIT_EVENT_COLUMNS = (*HASHED_FIELDS, "chain_position", "hash")

ACCESS_REPORT_COLUMNS = (
    "recorded_at",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "api_client_id",
    "api_client_name",
    "action",
    "resource_type",
    "resource_id",
    "purpose_of_use",
    "outcome",
    "http_status",
    "source_ip",
    "id",
)

# A cell starting with one of these is a formula to a spreadsheet; user agents and
# resource ids come from clients, so an export opened in Excel could run one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def stream_csv(queryset, columns, *, chunk_size=CHUNK_SIZE, header=None, transform=None):
    """Yield the CSV of `queryset` (its columns `columns`) in chunks of bytes.
    `header` names the columns in the first line when it differs from `columns`;
    `transform` maps each row (a tuple of `columns`) before it is written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header or columns)
    with transaction.atomic(using=queryset.db):
        rows = queryset.values_list(*columns).iterator(chunk_size=chunk_size)
        with closing(rows):
            written = 0
            for row in rows:
                if transform is not None:
                    row = transform(row)
                writer.writerow([_cell(value) for value in row])
                written += 1
                if written == chunk_size:
                    yield buffer.getvalue().encode("utf-8")
                    buffer.seek(0)
                    buffer.truncate()
                    written = 0
    yield buffer.getvalue().encode("utf-8")
