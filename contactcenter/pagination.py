from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination, status
from rest_framework.exceptions import NotFound

from contactcenter.errors import ApiError

CURSOR_PARAM = "cursor"


class InvalidCursor(ApiError):
    """The one answer to a cursor no list handed out, whichever pagination reads it."""

    def __init__(self):
        super().__init__(
            "The cursor is not one this list handed out; start again from the first page.",
            code="invalid_cursor",
            status_code=status.HTTP_400_BAD_REQUEST,
            details={CURSOR_PARAM: ["Invalid cursor."]},
        )


class CursorPagination(pagination.CursorPagination):
    """Keyset pagination: a deep page costs the same as the first.

    Each view names its order in `ordering`, an indexed key ending in a unique
    column such as ("-occurred_at", "-id"), so that the page is an index range
    scan whatever its depth.
    """

    cursor_query_param = CURSOR_PARAM
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"
    _position_field = None

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "ordering", None)
        if ordering:
            return (ordering,) if isinstance(ordering, str) else tuple(ordering)
        return super().get_ordering(request, queryset, view)

    def paginate_queryset(self, queryset, request, view=None):
        ordering = self.get_ordering(request, queryset, view)
        self._position_field = queryset.model._meta.get_field(ordering[0].lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF answers a cursor it cannot decode with 404, and one whose position
        is not a value of the ordering column reaches the database as a filter
        that fails there; both are the list's 400 `invalid_cursor`."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        if cursor is not None and cursor.position is not None:
            try:
                self._position_field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, TypeError):
                raise InvalidCursor() from None
        return cursor
