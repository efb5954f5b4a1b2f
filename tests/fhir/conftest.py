import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class

from channels_app.models import ChannelAccount
from channels_app.services import inbound_record, reply_create
from contactcenter import roles
from fhir.models import SmartClient
from patients.models import Channel
from tests.channels_app import conftest as channels_fixtures
from tests.factories import make_api_key, make_patient, make_staff

post_twilio = channels_fixtures.post_twilio

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def validated(resource):
    """Parse a served resource with fhir.resources' models (raises on anything
    that is not valid), recursing into Bundle entries."""
    model = get_fhir_model_class(resource["resourceType"])
    parsed = model.model_validate(resource)
    for entry in resource.get("entry", []):
        validated(entry["resource"])
    return parsed


class Keys:
    """A client's signing key, as a SMART backend service holds it."""

    def __init__(self, algorithm="RS384", kid="key-1"):
        self.algorithm, self.kid = algorithm, kid
        if algorithm == "RS384":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP384R1())
            public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public, "kid": kid, "alg": algorithm, "use": "sig"}]}

    def assertion(self, *, client_id, audience, lifetime=240, jti=None, **overrides):
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "exp": now + lifetime,
            "jti": jti or uuid.uuid4().hex,
            **overrides,
        }
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


@pytest.fixture(scope="session")
def rsa_keys():
    return Keys("RS384")


@pytest.fixture(scope="session")
def ec_keys():
    return Keys("ES384", kid="ec-1")


@pytest.fixture
def smart_client(north, rsa_keys, ec_keys):
    """An EHR registered for SMART Backend Services, bound to team North, with
    every read scope and patient and appointment writes."""
    _key, client = make_api_key(
        scopes=[
            "patients:read",
            "patients:write",
            "appointments:write",
            "timeline:read",
            "audit:read",
        ],
        team=north,
        name="ehr",
    )
    SmartClient.objects.create(
        api_client=client, jwks={"keys": rsa_keys.jwks["keys"] + ec_keys.jwks["keys"]}
    )
    return client


@pytest.fixture
def fhir_key(north):
    """API key headers of a client of team North with the given scopes."""

    def build(*scopes, team=north):
        key, _client = make_api_key(scopes=list(scopes), team=team)
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    return build


@pytest.fixture
def sms_line(north):
    return ChannelAccount.objects.create(
        kind=Channel.SMS, name="North line", address="+15005550006", team=north
    )


@pytest.fixture
def thread(patient, sms_line, north):
    """A patient's SMS conversation: three inbound texts and one staff reply."""
    agent = make_staff("fhir-agent", role=roles.AGENT, teams=[north])
    start = timezone.now() - timedelta(hours=3)
    inbound = []
    for n in range(3):
        ingested = inbound_record(
            channel=Channel.SMS,
            account=sms_line,
            address="+14155550100",
            body=f"Question {n}",
            provider_id=f"SM{n:032d}",
            occurred_at=start + timedelta(minutes=n),
            source="twilio",
            raw_payload={"Body": f"Question {n}"},
        )
        inbound.append(ingested.interaction)
    reply, _created = reply_create(
        conversation=inbound[0].conversation, author=agent, body="Answer"
    )
    return {"conversation": inbound[0].conversation, "inbound": inbound, "reply": reply}


@pytest.fixture
def other_patient(south):
    return make_patient(
        team=south, given_name="Alan", family_name="Turing", phones=("+14155550199",)
    )
