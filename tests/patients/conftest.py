import pytest

from contactcenter import roles
from tests.factories import make_staff, token_for


@pytest.fixture
def teammate(north):
    return make_staff("teammate", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def as_user():
    return token_for
