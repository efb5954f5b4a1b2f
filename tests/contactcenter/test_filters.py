"""query_cleaned: an unfiltered request is answered from the empty form's cleaned
data, computed once, and gets the same answer the form would give it."""

import pytest
from django.http import QueryDict
from django.test import RequestFactory
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from channels_app.models import Conversation, Interaction
from channels_app.views import InboxFilter, TimelineFilter
from contactcenter.filters import _form_class, query_cleaned


def request_for(query):
    return Request(RequestFactory().get("/api/v1/conversations/", query))


@pytest.mark.parametrize(
    ("filterset", "model"), [(InboxFilter, Conversation), (TimelineFilter, Interaction)]
)
def test_a_request_that_filters_nothing_gets_the_forms_answer(filterset, model):
    form = _form_class(filterset, model)(data=QueryDict())
    assert form.is_valid()

    # A cursor is not a filter: the next page of an unfiltered list is unfiltered.
    assert query_cleaned(filterset, request_for({"cursor": "abc"}), model) == form.cleaned_data
    assert query_cleaned(filterset, request_for({}), model) == form.cleaned_data


def test_the_unfiltered_answer_is_a_copy_each_time():
    first = query_cleaned(InboxFilter, request_for({}), Conversation)
    first["status"].append("resolved")
    first["team"] = 7

    again = query_cleaned(InboxFilter, request_for({}), Conversation)
    assert again["status"] == []
    assert again["team"] is None


def test_a_named_filter_is_still_cleaned_and_refused_by_the_form():
    data = query_cleaned(InboxFilter, request_for({"status": ["open"], "team": "3"}), Conversation)
    assert data["status"] == ["open"]
    assert data["team"] == 3

    with pytest.raises(ValidationError) as refused:
        query_cleaned(InboxFilter, request_for({"team": "0"}), Conversation)
    assert "team" in refused.value.detail
    # A value outside the choices: the form's to refuse, not the shortcut's.
    with pytest.raises(ValidationError):
        query_cleaned(InboxFilter, request_for({"status": "closed-ish"}), Conversation)
