"""Keys for PHI and AES-256-GCM encryption of single values.

FIELD_ENCRYPTION_KEYS is an ordered keyring, ``id:base64key,id:base64key``: the
first key encrypts, every key decrypts, so a new key is put first and the old one
stays until ``manage.py rotate_encryption_keys`` has moved every value off it.
BLIND_INDEX_KEY is a separate key for the HMAC lookups in blind_index.py.

A stored value is text: ``v1:<key id>:<base64(nonce + ciphertext + tag)>``. The
associated data is ``<app_label>.<model_name>.<field_name>:<pk>``, so a value
copied to another row or column fails authentication instead of decrypting there.

Error messages name the setting, the key id or the model, field and pk; never a
key, a ciphertext or a plaintext.
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import receiver
from django.test.signals import setting_changed

FORMAT_VERSION = "v1"
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")
KEY_BYTES = 32
BLIND_INDEX_MIN_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

_KEY_SETTINGS = ("FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_MAC_KEYS")
_cache = {}


class DecryptionError(Exception):
    """A stored value that cannot be decrypted for the row and column it is in."""

    def __init__(self, context, reason):
        self.model_label = f"{context.app_label}.{context.model_name}"
        self.field_name = context.field_name
        self.pk = context.pk
        self.reason = reason
        super().__init__(
            f"Cannot decrypt {self.model_label}.{self.field_name} of pk {self.pk}: {reason}."
        )


@dataclass(frozen=True)
class FieldContext:
    """Where a value lives; bound into the ciphertext as associated data."""

    app_label: str
    model_name: str
    field_name: str
    pk: str

    @property
    def associated_data(self):
        return f"{self.app_label}.{self.model_name}.{self.field_name}:{self.pk}".encode()


@dataclass(frozen=True)
class Keyring:
    primary_id: str
    ciphers: dict

    @property
    def key_ids(self):
        return tuple(self.ciphers)


def parse_keyring(raw):
    """Parse FIELD_ENCRYPTION_KEYS; raises ImproperlyConfigured naming the variable
    and the entry's position (or a valid key id), never the key text."""
    keys = parse_key_list(raw, name="FIELD_ENCRYPTION_KEYS")
    return Keyring(
        primary_id=next(iter(keys)), ciphers={key_id: AESGCM(key) for key_id, key in keys.items()}
    )


def parse_key_list(raw, *, name):
    """A keyring variable, `id:base64key,...` of 32-byte keys, as {id: key} in the
    order given (the first is the one that encrypts or signs)."""
    if not raw or not raw.strip():
        raise ImproperlyConfigured(
            f"{name} is not set: give at least one key as id:base64key (32 bytes)."
        )
    keys = {}
    for position, entry in enumerate(raw.split(","), start=1):
        key_id, separator, encoded = entry.strip().partition(":")
        if not separator:
            raise ImproperlyConfigured(f"{name} entry {position} is not of the form id:base64key.")
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise ImproperlyConfigured(
                f"{name} entry {position} has an invalid key id: use 1 to 16 of "
                "A-Z, a-z, 0-9, '_' and '-'."
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"{name} lists the key id {key_id!r} twice.")
        key = _decode_key(encoded, name=name, what=f"key {key_id!r}")
        if len(key) != KEY_BYTES:
            raise ImproperlyConfigured(
                f"{name} key {key_id!r} is {len(key)} bytes after base64 decoding; "
                f"it must be exactly {KEY_BYTES}."
            )
        keys[key_id] = key
    return keys


def parse_blind_index_key(raw):
    name = "BLIND_INDEX_KEY"
    if not raw or not raw.strip():
        raise ImproperlyConfigured(
            f"{name} is not set: give a base64 key of at least {BLIND_INDEX_MIN_KEY_BYTES} bytes."
        )
    key = _decode_key(raw.strip(), name=name, what="the key")
    if len(key) < BLIND_INDEX_MIN_KEY_BYTES:
        raise ImproperlyConfigured(
            f"{name} is {len(key)} bytes after base64 decoding; it must be at least "
            f"{BLIND_INDEX_MIN_KEY_BYTES}."
        )
    return key


def _decode_key(encoded, *, name, what):
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        # `from None`: binascii's message may quote characters of the key.
        raise ImproperlyConfigured(f"{name}: {what} is not valid standard base64.") from None


def field_keyring():
    keyring = _cache.get("FIELD_ENCRYPTION_KEYS")
    if keyring is None:
        keyring = parse_keyring(getattr(settings, "FIELD_ENCRYPTION_KEYS", ""))
        _cache["FIELD_ENCRYPTION_KEYS"] = keyring
    return keyring


def blind_index_key():
    key = _cache.get("BLIND_INDEX_KEY")
    if key is None:
        key = parse_blind_index_key(getattr(settings, "BLIND_INDEX_KEY", ""))
        _cache["BLIND_INDEX_KEY"] = key
    return key


def audit_mac_keys():
    """AUDIT_MAC_KEYS as {id: key}: the first signs new audit rows, all verify."""
    keys = _cache.get("AUDIT_MAC_KEYS")
    if keys is None:
        keys = parse_key_list(getattr(settings, "AUDIT_MAC_KEYS", ""), name="AUDIT_MAC_KEYS")
        _cache["AUDIT_MAC_KEYS"] = keys
    return keys


def validate_key_settings():
    """Parse every key now, so a bad key stops start-up rather than the first request
    that touches PHI or writes an audit row."""
    field_keyring()
    blind_index_key()
    audit_mac_keys()


@receiver(setting_changed)
def _forget_parsed_keys(*, setting, **kwargs):
    if setting in _KEY_SETTINGS:
        _cache.pop(setting, None)


def stored_prefix(key_id):
    """The text every value encrypted under key_id starts with."""
    return f"{FORMAT_VERSION}:{key_id}:"


def encrypt(plaintext, *, context):
    keyring = field_keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = keyring.ciphers[keyring.primary_id].encrypt(
        nonce, plaintext.encode("utf-8"), context.associated_data
    )
    payload = base64.b64encode(nonce + sealed).decode("ascii")
    return f"{stored_prefix(keyring.primary_id)}{payload}"


def decrypt(stored, *, context):
    """The plaintext of a stored value; DecryptionError for anything that does not
    authenticate for this context. Never returns the stored text itself."""
    _, key_id, payload = _split(stored, context=context)
    cipher = field_keyring().ciphers.get(key_id)
    if cipher is None:
        raise DecryptionError(context, f"key id {key_id!r} is not in FIELD_ENCRYPTION_KEYS")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(context, "the stored value is malformed") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(context, "the stored value is malformed")
    try:
        plaintext = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.associated_data)
    except InvalidTag:
        raise DecryptionError(
            context,
            f"authentication failed under key {key_id!r} (altered value, wrong key, or a "
            "value copied from another row or column)",
        ) from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError(context, "the decrypted value is not UTF-8") from None


def reencrypt(stored, *, context):
    """The value under the current first key; unchanged if already there."""
    if stored.startswith(stored_prefix(field_keyring().primary_id)):
        return stored
    return encrypt(decrypt(stored, context=context), context=context)


def key_id_of(stored):
    """The key id a stored value names, or None when it is not in the v1 format."""
    parts = stored.split(":", 2)
    if len(parts) == 3 and parts[0] == FORMAT_VERSION and KEY_ID_PATTERN.fullmatch(parts[1]):
        return parts[1]
    return None


def _split(stored, *, context):
    if not isinstance(stored, str):
        raise DecryptionError(context, "the stored value is not text")
    key_id = key_id_of(stored)
    if key_id is None:
        raise DecryptionError(context, "the stored value is malformed")
    return stored.split(":", 2)
