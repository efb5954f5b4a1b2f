import pytest

from contactcenter import roles
from tests.factories import make_staff


@pytest.fixture
def admin_user(db):
    return make_staff("administrator", role=roles.ADMIN)
