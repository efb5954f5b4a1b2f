import pytest

from contactcenter import roles
from tests.factories import make_api_key, make_patient, make_staff, token_for


@pytest.fixture
def member(north):
    return make_staff("member", role=roles.AGENT, teams=[north])


@pytest.fixture
def teammate(north):
    return make_staff("teammate", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def outsider(south):
    return make_staff("outsider", role=roles.AGENT, teams=[south])


@pytest.fixture
def compliance_officer(db):
    return make_staff("officer", role=roles.COMPLIANCE)


@pytest.fixture
def patient(north):
    return make_patient(team=north, given_name="Grace", family_name="Hopper")


@pytest.fixture
def as_user():
    return token_for


@pytest.fixture
def api_key_headers(db):
    def build(*scopes, team=None):
        key, _ = make_api_key(scopes=list(scopes), team=team)
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    return build
