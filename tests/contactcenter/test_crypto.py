import base64
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from contactcenter import crypto
from contactcenter.crypto import DecryptionError, FieldContext

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()
CONTEXT = FieldContext(
    app_label="patients", model_name="patient", field_name="given_name", pk="0b7c3d56"
)


def _with_payload(stored, transform):
    version, key_id, payload = stored.split(":", 2)
    raw = transform(bytearray(base64.b64decode(payload)))
    return f"{version}:{key_id}:{base64.b64encode(bytes(raw)).decode()}"


@given(st.text())
def test_encrypt_then_decrypt_returns_the_exact_text(plaintext):
    stored = crypto.encrypt(plaintext, context=CONTEXT)

    assert crypto.decrypt(stored, context=CONTEXT) == plaintext


def test_stored_value_holds_format_version_key_id_nonce_and_ciphertext(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"

    stored = crypto.encrypt("Ada", context=CONTEXT)

    version, key_id, payload = stored.split(":", 2)
    assert (version, key_id) == ("v1", "A")
    raw = base64.b64decode(payload, validate=True)
    assert len(raw) == crypto.NONCE_BYTES + len(b"Ada") + crypto.TAG_BYTES
    assert "Ada" not in stored


def test_each_encryption_uses_a_fresh_nonce():
    first = crypto.encrypt("same text", context=CONTEXT)
    second = crypto.encrypt("same text", context=CONTEXT)

    assert first != second
    assert crypto.decrypt(first, context=CONTEXT) == crypto.decrypt(second, context=CONTEXT)


def test_first_key_encrypts_and_every_key_decrypts(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    under_a = crypto.encrypt("old", context=CONTEXT)

    settings.FIELD_ENCRYPTION_KEYS = f"B:{KEY_B}, A:{KEY_A}"

    assert crypto.key_id_of(crypto.encrypt("new", context=CONTEXT)) == "B"
    assert crypto.decrypt(under_a, context=CONTEXT) == "old"
    assert crypto.field_keyring().key_ids == ("B", "A")


def test_reencrypt_moves_a_value_to_the_first_key_and_keeps_current_ones(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    under_a = crypto.encrypt("old", context=CONTEXT)
    settings.FIELD_ENCRYPTION_KEYS = f"B:{KEY_B},A:{KEY_A}"

    under_b = crypto.reencrypt(under_a, context=CONTEXT)

    assert crypto.key_id_of(under_b) == "B"
    assert crypto.decrypt(under_b, context=CONTEXT) == "old"
    assert crypto.reencrypt(under_b, context=CONTEXT) == under_b


@pytest.mark.parametrize(
    "other",
    [
        FieldContext(app_label="patients", model_name="patient", field_name="given_name", pk="x"),
        FieldContext(
            app_label="patients", model_name="patient", field_name="family_name", pk="0b7c3d56"
        ),
        FieldContext(
            app_label="patients", model_name="contactpoint", field_name="given_name", pk="0b7c3d56"
        ),
        FieldContext(
            app_label="other", model_name="patient", field_name="given_name", pk="0b7c3d56"
        ),
    ],
    ids=["other row", "other field", "other model", "other app"],
)
def test_value_does_not_decrypt_for_another_row_field_or_model(other):
    stored = crypto.encrypt("Ada", context=CONTEXT)

    with pytest.raises(DecryptionError, match="authentication failed"):
        crypto.decrypt(stored, context=other)


def test_value_under_a_key_no_longer_in_the_keyring_names_that_key_id(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    stored = crypto.encrypt("Ada", context=CONTEXT)
    settings.FIELD_ENCRYPTION_KEYS = f"B:{KEY_B}"

    with pytest.raises(DecryptionError, match="key id 'A' is not in FIELD_ENCRYPTION_KEYS"):
        crypto.decrypt(stored, context=CONTEXT)


def test_value_under_the_same_key_id_with_another_key_fails_authentication(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    stored = crypto.encrypt("Ada", context=CONTEXT)
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_B}"

    with pytest.raises(DecryptionError, match="authentication failed"):
        crypto.decrypt(stored, context=CONTEXT)


@pytest.mark.parametrize("position", [0, 11, 12, -1])
def test_flipped_byte_in_nonce_ciphertext_or_tag_fails_authentication(position):
    stored = crypto.encrypt("Ada Lovelace", context=CONTEXT)

    def flip(raw):
        raw[position] ^= 0x01
        return raw

    with pytest.raises(DecryptionError, match="authentication failed"):
        crypto.decrypt(_with_payload(stored, flip), context=CONTEXT)


def test_truncated_value_is_refused():
    stored = crypto.encrypt("Ada Lovelace", context=CONTEXT)

    with pytest.raises(DecryptionError):
        crypto.decrypt(_with_payload(stored, lambda raw: raw[:-1]), context=CONTEXT)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "Ada Lovelace",
        "v2:test1:AAAA",
        "v1:test1",
        "v1:bad id!:AAAA",
        "v1:test1:not base64!",
        "v1:test1:" + base64.b64encode(b"short").decode(),
    ],
)
def test_malformed_stored_values_raise_decryption_error_and_never_return_the_text(stored):
    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt(stored, context=CONTEXT)

    if stored:
        assert stored not in str(caught.value)


def test_decryption_error_names_model_field_and_pk_but_no_value(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    stored = crypto.encrypt("Ada Lovelace", context=CONTEXT)
    other = FieldContext(app_label="patients", model_name="patient", field_name="mrn", pk="42")

    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt(stored, context=other)

    message = str(caught.value)
    assert "patients.patient.mrn" in message
    assert "pk 42" in message
    assert stored.split(":", 2)[2] not in message
    assert "Ada" not in message
    assert caught.value.__cause__ is None
    assert (caught.value.model_label, caught.value.field_name, caught.value.pk) == (
        "patients.patient",
        "mrn",
        "42",
    )


SHORT_KEY = base64.b64encode(b"k" * 31).decode()
LONG_KEY = base64.b64encode(b"k" * 33).decode()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        KEY_A,
        f":{KEY_A}",
        f"bad id:{KEY_A}",
        f"a-key-id-too-long-for-us:{KEY_A}",
        f"k1:{SHORT_KEY}",
        f"k1:{LONG_KEY}",
        "k1:not*base64*at*all",
        f"k1:{KEY_A[:-2]}",
        f"k1:{KEY_A},k1:{KEY_B}",
        f"k1:{KEY_A},",
    ],
    ids=[
        "empty",
        "blank",
        "no key id",
        "empty key id",
        "key id with a space",
        "key id too long",
        "31-byte key",
        "33-byte key",
        "not base64",
        "bad padding",
        "duplicate key id",
        "trailing comma",
    ],
)
def test_bad_field_encryption_keys_are_improperly_configured_naming_the_setting(settings, value):
    settings.FIELD_ENCRYPTION_KEYS = value

    with pytest.raises(ImproperlyConfigured) as caught:
        crypto.validate_key_settings()

    message = str(caught.value)
    assert "FIELD_ENCRYPTION_KEYS" in message
    for secret in (KEY_A, KEY_B, SHORT_KEY, LONG_KEY, KEY_A[:-2], "not*base64*at*all"):
        assert secret not in message


def test_missing_field_encryption_keys_setting_is_improperly_configured(settings):
    del settings.FIELD_ENCRYPTION_KEYS

    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        crypto.field_keyring()


@pytest.mark.parametrize(
    "value",
    ["", " ", base64.b64encode(b"k" * 31).decode(), "not*base64", KEY_A[:-2]],
    ids=["empty", "blank", "31 bytes", "not base64", "bad padding"],
)
def test_bad_blind_index_key_is_improperly_configured_naming_the_setting(settings, value):
    settings.BLIND_INDEX_KEY = value

    with pytest.raises(ImproperlyConfigured) as caught:
        crypto.validate_key_settings()

    assert "BLIND_INDEX_KEY" in str(caught.value)
    if value.strip():
        assert value not in str(caught.value)


def test_missing_blind_index_key_setting_is_improperly_configured(settings):
    del settings.BLIND_INDEX_KEY

    with pytest.raises(ImproperlyConfigured, match="BLIND_INDEX_KEY"):
        crypto.blind_index_key()


def test_blind_index_key_may_be_longer_than_32_bytes(settings):
    settings.BLIND_INDEX_KEY = base64.b64encode(b"k" * 64).decode()

    assert crypto.blind_index_key() == b"k" * 64


def test_parsed_keys_follow_settings_changes(settings):
    settings.FIELD_ENCRYPTION_KEYS = f"A:{KEY_A}"
    settings.BLIND_INDEX_KEY = KEY_A
    assert crypto.field_keyring().primary_id == "A"
    assert crypto.blind_index_key() == b"a" * 32

    settings.FIELD_ENCRYPTION_KEYS = f"B:{KEY_B}"
    settings.BLIND_INDEX_KEY = KEY_B

    assert crypto.field_keyring().primary_id == "B"
    assert crypto.blind_index_key() == b"b" * 32


def _manage_check(**env_overrides):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        **env_overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=django_settings.BASE_DIR,
        timeout=120,
    )


def test_start_up_stops_on_a_short_field_encryption_key_without_printing_it():
    result = _manage_check(FIELD_ENCRYPTION_KEYS=f"k1:{SHORT_KEY}")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "FIELD_ENCRYPTION_KEYS key 'k1' is 31 bytes" in result.stderr
    assert SHORT_KEY not in result.stderr + result.stdout


def test_start_up_stops_on_a_malformed_blind_index_key():
    result = _manage_check(BLIND_INDEX_KEY="not*base64")

    assert result.returncode != 0
    assert "BLIND_INDEX_KEY" in result.stderr
    assert "not*base64" not in result.stderr + result.stdout
