import json
import sys
from array import array
from base64 import b64decode, b64encode

from django.db import models

# 4-byte signed whole numbers: a duration in seconds fits for 68 years.
_TYPECODE = "i"


def pack_integers(values):
    """Whole numbers as little-endian 4-byte signed integers; OverflowError (a
    clear one, from array) for a number that does not fit."""
    packed = array(_TYPECODE, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def unpack_integers(data):
    values = array(_TYPECODE)
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


class PackedIntegersField(models.BinaryField):
    """A list of whole numbers, stored packed (4 bytes each; `bytea` in
    PostgreSQL, `blob` in SQLite).

    For the KPI rollup's duration samples, of which a year's report reads about
    270,000: fetching and unpacking them as bytes took a third of the time psycopg
    took to parse them from an `integer[]` (bench/kpi_report.py)."""

    description = "A list of whole numbers, packed"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", list)
        super().__init__(*args, **kwargs)

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        return super().get_db_prep_value(pack_integers(value), connection, prepared)

    def from_db_value(self, value, expression, connection):
        return None if value is None else unpack_integers(value)

    def to_python(self, value):
        if isinstance(value, str):  # value_to_string()'s form, from a fixture
            value = b64decode(value.encode("ascii"))
        if isinstance(value, bytes | bytearray | memoryview):
            return unpack_integers(value)
        return value

    def value_to_string(self, obj):
        return b64encode(pack_integers(self.value_from_object(obj))).decode("ascii")


class IntegerSamplesField(models.Field):
    """The rollup samples' first form, `integer[]` in PostgreSQL and JSON text
    elsewhere; only migrations 0001 and 0002 (which converts it) use it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", list)
        super().__init__(*args, **kwargs)

    def db_type(self, connection):
        return "integer[]" if connection.vendor == "postgresql" else "text"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        values = [int(item) for item in value]
        return values if connection.vendor == "postgresql" else json.dumps(values)

    def from_db_value(self, value, expression, connection):
        if value is None or isinstance(value, list):
            return value
        return json.loads(value)
