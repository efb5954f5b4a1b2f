import base64
import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contactcenter.blind_index import (
    EMAIL,
    MRN,
    PHONE,
    BlindIndexField,
    blind_index,
    email_index,
    filter_by_blind_index,
    mrn_index,
    normalise_email,
    normalise_mrn,
    normalise_phone,
    phone_index,
)
from tests.fieldtestapp.models import Secret

HEX_64 = re.compile(r"[0-9a-f]{64}")


@pytest.mark.parametrize(
    "raw",
    ["(415) 555-0100", "415.555.0100", "415-555-0100", "+1 415 555 0100", "+14155550100"],
)
def test_us_phone_formats_normalise_to_e164(raw):
    assert normalise_phone(raw) == "+14155550100"


def test_phone_without_country_code_is_read_in_the_given_region():
    assert normalise_phone("020 7946 0958", region="GB") == "+442079460958"
    assert normalise_phone("+44 20 7946 0958") == "+442079460958"


def test_default_region_comes_from_settings(settings):
    settings.PHONE_DEFAULT_REGION = "GB"

    assert normalise_phone("020 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Enter a phone number"),
        ("   ", "Enter a phone number"),
        ("call me", "not a phone number"),
        ("12", "wrong number of digits"),
        ("555-0100", "does not exist"),
        ("+1 999 555 0100", "does not exist"),
    ],
)
def test_impossible_phone_numbers_raise_value_error_with_a_clear_message(raw, message):
    with pytest.raises(ValueError, match=message) as caught:
        normalise_phone(raw)

    if raw.strip():
        assert raw not in str(caught.value)


@pytest.mark.parametrize(
    "raw", ["Ada@Example.org", "  ada@example.ORG ", "ADA@EXAMPLE.ORG\n", "ada@example.org"]
)
def test_email_is_trimmed_and_case_folded(raw):
    assert normalise_email(raw) == "ada@example.org"


@pytest.mark.parametrize(
    "raw", ["", "ada", "ada@", "@example.org", "ada@@example.org", "ada @example.org", "a@b"]
)
def test_malformed_email_raises_value_error(raw):
    with pytest.raises(ValueError, match="email address"):
        normalise_email(raw)


@pytest.mark.parametrize("raw", ["mrn-001 234", " MRN001234 ", "Mrn 001-234", "MRN\t001--234"])
def test_mrn_drops_spaces_and_dashes_and_is_upper_cased(raw):
    assert normalise_mrn(raw) == "MRN001234"
    assert mrn_index(raw) == blind_index(MRN, "MRN001234")


@pytest.mark.parametrize("raw", ["", " - ", None])
def test_empty_mrn_raises_value_error(raw):
    with pytest.raises(ValueError, match="medical record number"):
        normalise_mrn(raw)


def test_blind_index_is_64_hex_characters_and_deterministic():
    first = blind_index(PHONE, "+14155550100")

    assert HEX_64.fullmatch(first)
    assert blind_index(PHONE, "+14155550100") == first
    assert blind_index(PHONE, "+14155550101") != first


@given(st.text())
def test_the_same_value_never_collides_across_kinds(value):
    indexes = {blind_index(kind, value) for kind in (PHONE, EMAIL, MRN)}

    assert len(indexes) == 3
    assert all(HEX_64.fullmatch(index) for index in indexes)


def test_kind_and_value_are_separated_so_shifting_text_between_them_differs():
    assert blind_index("ab", "c") != blind_index("a", "bc")


def test_blind_index_depends_on_the_blind_index_key(settings):
    before = phone_index("(415) 555-0100")

    settings.BLIND_INDEX_KEY = base64.b64encode(b"another key, 32 bytes long.....!").decode()

    assert phone_index("(415) 555-0100") != before


def test_blind_index_does_not_use_a_field_encryption_key(settings):
    before = email_index("ada@example.org")

    settings.FIELD_ENCRYPTION_KEYS = "other:" + base64.b64encode(b"x" * 32).decode()

    assert email_index("ada@example.org") == before


def test_unknown_or_unsafe_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        blind_index("phone\x00email", "x")


def test_index_helpers_accept_raw_or_already_normalised_values():
    assert phone_index("415.555.0100") == phone_index("+14155550100")
    assert email_index(" Ada@Example.org") == email_index("ada@example.org")


@pytest.mark.django_db
def test_phone_stored_in_one_format_is_found_by_others_through_the_blind_index():
    stored = Secret.objects.create(
        phone="(415) 555-0100",
        phone_index=phone_index("(415) 555-0100"),
        date=datetime.date(2000, 1, 1),
    )
    Secret.objects.create(
        phone="(415) 555-0199",
        phone_index=phone_index("(415) 555-0199"),
        date=datetime.date(2000, 1, 1),
    )

    for raw in ("+14155550100", "415.555.0100"):
        found = filter_by_blind_index(
            Secret.objects.all(), field_name="phone_index", kind=PHONE, raw_value=raw
        )
        assert list(found) == [stored]
        assert found.get().phone == "(415) 555-0100"


@pytest.mark.django_db
def test_blind_index_lookup_raises_for_an_impossible_value_instead_of_matching_nothing():
    with pytest.raises(ValueError, match="phone number"):
        filter_by_blind_index(
            Secret.objects.all(), field_name="phone_index", kind=PHONE, raw_value="12"
        )
    with pytest.raises(ValueError, match="kind"):
        filter_by_blind_index(
            Secret.objects.all(), field_name="phone_index", kind="name", raw_value="Ada"
        )


@pytest.mark.django_db
def test_blind_index_column_holds_no_plaintext():
    secret = Secret.objects.create(
        phone="+14155550100", phone_index=phone_index("+14155550100"), date=datetime.date.today()
    )

    assert "4155550100" not in Secret.objects.values_list("phone_index", flat=True).get(
        pk=secret.pk
    )


def test_blind_index_field_defaults_and_deconstruction():
    field = BlindIndexField(unique=True)
    field.set_attributes_from_name("mrn_index")

    assert (field.max_length, field.db_index) == (64, True)
    assert field.deconstruct()[3] == {"unique": True}
    plain = BlindIndexField(db_index=False)
    plain.set_attributes_from_name("other")
    assert plain.deconstruct()[3] == {"db_index": False}
