"""Blind indexes: exact-match lookups on encrypted values.

A blind index is HMAC-SHA256 over a normalised value, keyed with BLIND_INDEX_KEY
(separate from the encryption keys) and separated by kind, so the same text as a
phone and as an email never gives the same index. It is stored next to the
encrypted column in a BlindIndexField and compared for equality only.

Normalisers raise ValueError with a message fit to show to the person who typed
the value (it never repeats the value); callers decide what a bad value means,
e.g. the API answers 400 for an impossible phone number.
"""

import hashlib
import hmac
import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from contactcenter import crypto

PHONE = "phone"
EMAIL = "email"
MRN = "mrn"
INDEX_LENGTH = 64

_KIND_PATTERN = re.compile(r"[a-z0-9_.-]{1,32}")
_MRN_SEPARATORS = re.compile(r"[\s-]+")


def normalise_phone(value, region=None):
    """E.164 (``+14155550100``). A number without a country code is read in
    region, by default settings.PHONE_DEFAULT_REGION."""
    region = region or settings.PHONE_DEFAULT_REGION
    if not isinstance(value, str) or not value.strip():
        raise ValueError("Enter a phone number.")
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("This is not a phone number.") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("This phone number has the wrong number of digits.")
    if not phonenumbers.is_valid_number(number):
        raise ValueError("This phone number does not exist in its numbering plan.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value):
    """Trimmed and case-folded. Mail servers may treat the local part as case
    sensitive; practices do not, and a lookup must find what staff typed."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("Enter an email address.")
    normalised = value.strip().casefold()
    try:
        validate_email(normalised)
    except ValidationError:
        raise ValueError("This is not a valid email address.") from None
    return normalised


def normalise_mrn(value):
    """Upper-cased, without spaces or dashes, as records systems print MRNs in
    groups."""
    normalised = _MRN_SEPARATORS.sub("", value).upper() if isinstance(value, str) else ""
    if not normalised:
        raise ValueError("Enter a medical record number.")
    return normalised


NORMALISERS = {PHONE: normalise_phone, EMAIL: normalise_email, MRN: normalise_mrn}


def blind_index(kind, normalised_value):
    """64 hex characters: HMAC-SHA256(BLIND_INDEX_KEY, kind NUL value)."""
    if not _KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"Blind index kind {kind!r} must match {_KIND_PATTERN.pattern}.")
    message = f"{kind}\x00{normalised_value}".encode()
    return hmac.new(crypto.blind_index_key(), message, hashlib.sha256).hexdigest()


def phone_index(raw, *, region=None):
    return blind_index(PHONE, normalise_phone(raw, region))


def email_index(raw):
    return blind_index(EMAIL, normalise_email(raw))


def mrn_index(raw):
    return blind_index(MRN, normalise_mrn(raw))


def index_for(kind, raw_value):
    """Normalise with the kind's normaliser, then index. Raises ValueError."""
    try:
        normalise = NORMALISERS[kind]
    except KeyError:
        raise ValueError(f"No normaliser for blind index kind {kind!r}.") from None
    return blind_index(kind, normalise(raw_value))


def filter_by_blind_index(queryset, *, field_name, kind, raw_value):
    """queryset narrowed to rows whose field_name holds raw_value's index. Raises
    ValueError when raw_value cannot be normalised; it is not turned into an empty
    result, so the caller can tell "no match" from "impossible value"."""
    return queryset.filter(**{field_name: index_for(kind, raw_value)})


class BlindIndexField(models.CharField):
    """Holds a blind index: CharField(max_length=64, db_index=True) by default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", INDEX_LENGTH)
        kwargs.setdefault("db_index", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == INDEX_LENGTH:
            del kwargs["max_length"]
        if kwargs.get("db_index") is True:
            del kwargs["db_index"]
        else:
            kwargs["db_index"] = False
        return name, path, args, kwargs
