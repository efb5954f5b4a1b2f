from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Keyset pagination: a deep page costs the same as the first.

    Each view names its order in `ordering`, an indexed key ending in a unique
    column such as ("-occurred_at", "-id"), so that the page is an index range
    scan whatever its depth.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "ordering", None)
        if ordering:
            return (ordering,) if isinstance(ordering, str) else tuple(ordering)
        return super().get_ordering(request, queryset, view)
