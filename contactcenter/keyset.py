"""Keyset pagination over a sort key that ends in a unique column, for hot lists
read with hand-written SQL (selectors build the query, this module the cursor).

A cursor carries the sort key of the row it continues from and a direction, so
every page, first or ten-thousandth, is one index range scan:
`(occurred_at, id) < (cursor's occurred_at, cursor's id)` with `LIMIT n + 1`.
DRF's CursorPagination keeps only the first column plus an offset for ties and
cannot run on rows that are not model instances, hence this one.
"""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass

from django.utils.dateparse import parse_datetime
from rest_framework.pagination import BasePagination
from rest_framework.utils.urls import replace_query_param

from contactcenter.errors import ApiError
from contactcenter.pagination import CURSOR_PARAM, InvalidCursor

PAGE_SIZE_PARAM = "page_size"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Cursor:
    """`key` is the (timestamp, uuid) of the row the page continues from;
    `backwards` pages towards the start of the list (a "previous" link)."""

    key: tuple
    backwards: bool = False

    def encode(self):
        stamp, row_id = self.key
        payload = {"k": [stamp.isoformat(), str(row_id)], "b": int(self.backwards)}
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text):
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            payload = json.loads(raw)
            stamp_text, id_text = payload["k"]
            stamp = parse_datetime(stamp_text)
            backwards = payload.get("b", 0)
            if stamp is None or stamp.tzinfo is None or backwards not in (0, 1):
                raise ValueError(stamp_text)
            return cls(key=(stamp, uuid.UUID(id_text)), backwards=bool(backwards))
        except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
            raise InvalidCursor() from None


@dataclass
class PageRequest:
    cursor: Cursor | None
    size: int


@dataclass
class Page:
    """Rows in list order, and the cursors of the pages either side (None at an end)."""

    rows: list
    next: Cursor | None
    previous: Cursor | None


class KeysetPagination(BasePagination):
    """Reads `cursor` and `page_size` from the query string and answers
    `{"next": url, "previous": url, "results": [...]}` (the shape of DRF's cursor
    pagination, so clients follow `next` the same way on every list)."""

    def page_request(self, request):
        size = request.query_params.get(PAGE_SIZE_PARAM)
        try:
            size = min(max(int(size), 1), MAX_PAGE_SIZE) if size else DEFAULT_PAGE_SIZE
        except ValueError:
            raise ApiError(
                "page_size must be a whole number.",
                code="invalid",
                details={PAGE_SIZE_PARAM: ["A whole number is required."]},
            ) from None
        text = request.query_params.get(CURSOR_PARAM)
        return PageRequest(cursor=Cursor.decode(text) if text else None, size=size)

    @staticmethod
    def page_from(rows, *, page, key_of):
        """Cut a fetch of `page.size + 1` rows (in fetch order: reversed when paging
        backwards) into a Page with its neighbours' cursors."""
        more = len(rows) > page.size
        rows = rows[: page.size]
        backwards = page.cursor is not None and page.cursor.backwards
        if backwards:
            rows.reverse()
        if not rows:
            return Page(rows=rows, next=None, previous=None)
        has_next = page.cursor is not None if backwards else more
        has_previous = more if backwards else page.cursor is not None
        return Page(
            rows=rows,
            next=Cursor(key=key_of(rows[-1])) if has_next else None,
            previous=Cursor(key=key_of(rows[0]), backwards=True) if has_previous else None,
        )

    def body(self, request, page, results):
        url = request.build_absolute_uri()

        def link(cursor):
            if cursor is None:
                return None
            return replace_query_param(url, CURSOR_PARAM, cursor.encode())

        return {
            "next": link(page.next),
            "previous": link(page.previous),
            "results": results,
        }

    # --- OpenAPI -------------------------------------------------------------------
    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": CURSOR_PARAM,
                "required": False,
                "in": "query",
                "description": "The `next` or `previous` cursor of the page before.",
                "schema": {"type": "string"},
            },
            {
                "name": PAGE_SIZE_PARAM,
                "required": False,
                "in": "query",
                "description": f"Rows per page, 1 to {MAX_PAGE_SIZE} (default "
                f"{DEFAULT_PAGE_SIZE}).",
                "schema": {"type": "integer"},
            },
        ]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
