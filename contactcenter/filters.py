"""Query-string filters: declared once on a FilterSet (which also documents them
in the schema) and validated by its form before any value reaches a selector or
the database. A value the form refuses is a 400 naming the parameter, on every
list, whether the list filters a QuerySet or hand-written SQL."""

import copy
import functools

import django_filters
from django import forms
from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError

# The largest value of PostgreSQL's integer and bigint-free id columns; a larger
# number is refused by the form instead of overflowing in the database.
MAX_ID = 2**31 - 1


class IdField(forms.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.Filter):
    """An integer id (team, user, API key): a whole number an id column can hold."""

    field_class = IdField


@functools.cache
def _form_class(filterset_class, model):
    # A FilterSet builds a new form class for every instance: once per process.
    return filterset_class(queryset=model.objects.none()).get_form_class()


@functools.cache
def _unfiltered(form_class):
    # What the form cleans from a query string that names none of its fields, or
    # None when that is invalid (a required filter): the same every time.
    form = form_class(data=QueryDict())
    return form.cleaned_data if form.is_valid() else None


def query_cleaned(filterset_class, request, model):
    """The query string as `filterset_class`'s form cleans it; a 400 naming each
    refused parameter otherwise. For lists whose selector applies the filters
    (the FilterSet's own methods are no-ops there)."""
    form_class = _form_class(filterset_class, model)
    params = request.query_params
    if not any(name in params for name in form_class.base_fields):
        # Most requests filter nothing (an inbox tab, the next page of a
        # timeline): the empty form's answer, without building and cleaning a
        # form of deep-copied fields each time, which cost more than the query.
        unfiltered = _unfiltered(form_class)
        if unfiltered is not None:
            return copy.deepcopy(unfiltered)
    form = form_class(data=params)
    if not form.is_valid():
        raise ValidationError(form.errors)
    return form.cleaned_data
