import json

from django.db import models


class IntegerSamplesField(models.Field):
    """A list of integers: `integer[]` in PostgreSQL, which psycopg reads straight
    into a Python list (parsing a year of samples as JSON text would cost more than
    sorting them), and JSON text on other databases (the SQLite of `make run`)."""

    description = "A list of integers"

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

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value)
        return value
