import base64
import datetime
import uuid

import pytest
from django.core.exceptions import FieldError, ValidationError
from django.db import connection, models, transaction
from django.test.utils import isolate_apps
from hypothesis import given, settings
from hypothesis import strategies as st

from contactcenter import crypto
from contactcenter.crypto import DecryptionError
from contactcenter.fields import (
    Ciphertext,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedJSONField,
    EncryptedTextField,
    encrypted_fields,
)
from tests.fieldtestapp.models import Secret

ENCRYPTED = [field.name for field in encrypted_fields(Secret)]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
ROUND_TRIP = settings(deadline=None)


def _db_pk(pk):
    return Secret._meta.pk.get_db_prep_value(pk, connection)


def _raw_row(pk):
    with connection.cursor() as cursor:
        # Column names come from the model, never from input.
        cursor.execute(
            f"SELECT {', '.join(ENCRYPTED)} FROM fieldtestapp_secret WHERE id = %s",  # noqa: S608
            [_db_pk(pk)],
        )
        return dict(zip(ENCRYPTED, cursor.fetchone(), strict=True))


def _set_raw(pk, column, value):
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE fieldtestapp_secret SET {column} = %s WHERE id = %s",  # noqa: S608
            [value, _db_pk(pk)],
        )


def _round_trip(**values):
    saved = Secret.objects.create(date=datetime.date(2000, 1, 1), **values)
    return Secret.objects.get(pk=saved.pk), _raw_row(saved.pk)


@pytest.mark.django_db
@ROUND_TRIP
@given(value=st.text(), nullable=st.none() | st.text())
def test_text_round_trips_exactly_through_the_database(value, nullable):
    loaded, raw = _round_trip(text=value, text_nullable=nullable)

    assert loaded.text == value
    assert loaded.text_nullable == nullable
    assert raw["text"].startswith("v1:test1:")
    assert (raw["text_nullable"] is None) == (nullable is None)


@pytest.mark.django_db
@ROUND_TRIP
@given(value=st.text(max_size=64), nullable=st.none() | st.text(max_size=64))
def test_char_round_trips_exactly_through_the_database(value, nullable):
    loaded, raw = _round_trip(char=value, char_nullable=nullable)

    assert loaded.char == value
    assert loaded.char_nullable == nullable
    assert raw["char"].startswith("v1:test1:")
    assert (raw["char_nullable"] is None) == (nullable is None)


@pytest.mark.django_db
@ROUND_TRIP
@given(value=st.dates(), nullable=st.none() | st.dates())
def test_date_round_trips_exactly_through_the_database(value, nullable):
    saved = Secret.objects.create(date=value, date_nullable=nullable)

    loaded = Secret.objects.get(pk=saved.pk)
    raw = _raw_row(saved.pk)

    assert loaded.date == value
    assert type(loaded.date) is datetime.date
    assert loaded.date_nullable == nullable
    assert value.isoformat() not in raw["date"]
    assert (raw["date_nullable"] is None) == (nullable is None)


@pytest.mark.django_db
@ROUND_TRIP
@given(value=JSON_VALUES.filter(lambda value: value is not None), nullable=JSON_VALUES)
def test_json_round_trips_any_json_value_through_the_database(value, nullable):
    loaded, raw = _round_trip(data=value, data_nullable=nullable)

    assert loaded.data == value
    assert loaded.data_nullable == nullable
    assert raw["data"].startswith("v1:test1:")
    assert (raw["data_nullable"] is None) == (nullable is None)


@pytest.mark.django_db
def test_none_is_stored_as_null_and_not_encrypted():
    loaded, raw = _round_trip()

    assert raw["text_nullable"] is raw["char_nullable"] is raw["data_nullable"] is None
    assert raw["date_nullable"] is raw["phone"] is None
    assert loaded.text_nullable is loaded.date_nullable is loaded.data_nullable is None


CANARIES = {
    "text": "CANARY-TEXT Ada Lovelace, 12 Analytical Engine Road",
    "text_nullable": "CANARY-NULLABLE diagnosis: hypertension",
    "char": "CANARY-CHAR-MRN-0042",
    "char_nullable": "CANARY-CHAR-NULLABLE",
    "date": datetime.date(1815, 12, 10),
    "date_nullable": datetime.date(1852, 11, 27),
    "data": {"street": "CANARY-JSON-STREET", "city": "CANARY-JSON-CITY"},
    "data_nullable": ["CANARY-JSON-LIST"],
    "phone": "+14155550100",
}
CANARY_TEXTS = [
    "CANARY",
    "Lovelace",
    "hypertension",
    "1815-12-10",
    "1852-11-27",
    "4155550100",
    "Ada",
]


@pytest.mark.django_db
def test_raw_sql_over_the_table_shows_no_canary_plaintext():
    Secret.objects.create(**CANARIES)
    Secret.objects.bulk_create([Secret(**CANARIES) for _ in range(3)])
    row = Secret.objects.first()
    row.text = CANARIES["text"] + " updated"
    row.save()

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM fieldtestapp_secret")
        dump = repr(cursor.fetchall())

    assert dump.count("v1:test1:") == 4 * len(CANARIES)
    for canary in CANARY_TEXTS:
        assert canary not in dump
    values = repr(list(Secret.objects.values_list(*ENCRYPTED)))
    for canary in CANARY_TEXTS:
        assert canary not in values


@pytest.mark.django_db
def test_flipped_byte_in_the_stored_value_raises_naming_model_field_and_pk():
    secret = Secret.objects.create(text="Ada Lovelace", date=datetime.date(2000, 1, 1))
    stored = _raw_row(secret.pk)["text"]
    version, key_id, payload = stored.split(":", 2)
    raw = bytearray(base64.b64decode(payload))
    raw[20] ^= 0x80
    _set_raw(secret.pk, "text", f"{version}:{key_id}:{base64.b64encode(bytes(raw)).decode()}")

    loaded = Secret.objects.get(pk=secret.pk)
    with pytest.raises(DecryptionError) as caught:
        loaded.text  # noqa: B018

    message = str(caught.value)
    assert f"fieldtestapp.secret.text of pk {secret.pk}" in message
    assert payload[:16] not in message
    assert "Ada" not in message


@pytest.mark.django_db
def test_value_copied_to_another_row_by_sql_raises_naming_model_field_and_pk():
    source = Secret.objects.create(text="Ada Lovelace", date=datetime.date(2000, 1, 1))
    target = Secret.objects.create(text="Grace Hopper", date=datetime.date(2000, 1, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE fieldtestapp_secret SET text = "
            "(SELECT text FROM fieldtestapp_secret WHERE id = %s) WHERE id = %s",
            [_db_pk(source.pk), _db_pk(target.pk)],
        )

    loaded = Secret.objects.get(pk=target.pk)
    with pytest.raises(DecryptionError) as caught:
        loaded.text  # noqa: B018

    assert f"fieldtestapp.secret.text of pk {target.pk}" in str(caught.value)
    assert "Ada" not in str(caught.value)
    assert Secret.objects.get(pk=source.pk).text == "Ada Lovelace"


@pytest.mark.django_db
def test_value_copied_to_another_column_of_the_same_row_raises():
    secret = Secret.objects.create(text="Ada Lovelace", date=datetime.date(2000, 1, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE fieldtestapp_secret SET text_nullable = text WHERE id = %s", [_db_pk(secret.pk)]
        )

    loaded = Secret.objects.get(pk=secret.pk)
    with pytest.raises(DecryptionError, match=r"fieldtestapp\.secret\.text_nullable of pk"):
        loaded.text_nullable  # noqa: B018
    assert loaded.text == "Ada Lovelace"


@pytest.mark.django_db
def test_plaintext_written_by_sql_is_refused_not_returned():
    secret = Secret.objects.create(text="x", date=datetime.date(2000, 1, 1))
    _set_raw(secret.pk, "text", "Ada Lovelace")

    with pytest.raises(DecryptionError, match="malformed"):
        Secret.objects.get(pk=secret.pk).text  # noqa: B018


@pytest.mark.django_db
@pytest.mark.parametrize(
    "lookup",
    [
        {"text": "Ada"},
        {"text__iexact": "Ada"},
        {"text__icontains": "Ada"},
        {"text__startswith": "v1:"},
        {"text__in": ["Ada"]},
        {"char__gt": "A"},
        {"date": datetime.date(2000, 1, 1)},
        {"date__year": 2000},
        {"date__lte": datetime.date(2000, 1, 1)},
        {"data__city": "London"},
        {"data__city__icontains": "Lon"},
        {"data__contains": {"city": "London"}},
        {"data_nullable__has_key": "city"},
    ],
    ids=lambda lookup: next(iter(lookup)),
)
def test_lookups_other_than_isnull_are_refused_pointing_to_blind_indexes(lookup):
    with pytest.raises(FieldError) as caught:
        list(Secret.objects.filter(**lookup))

    assert "is encrypted" in str(caught.value)
    assert "blind index" in str(caught.value)


@pytest.mark.django_db
def test_get_and_exclude_with_an_encrypted_value_are_refused():
    with pytest.raises(FieldError):
        Secret.objects.get(char="Ada")
    with pytest.raises(FieldError):
        Secret.objects.exclude(char="Ada")


@pytest.mark.django_db
def test_isnull_and_equals_none_lookups_work():
    with_value = Secret.objects.create(text_nullable="Ada", date=datetime.date(2000, 1, 1))
    without = Secret.objects.create(date=datetime.date(2000, 1, 1))

    assert list(Secret.objects.filter(text_nullable__isnull=False)) == [with_value]
    assert list(Secret.objects.filter(text_nullable__isnull=True)) == [without]
    assert list(Secret.objects.filter(text_nullable=None)) == [without]
    assert list(Secret.objects.exclude(text_nullable=None)) == [with_value]


@pytest.mark.django_db
def test_save_after_changes_reencrypts_and_reload_reads_the_new_value():
    secret = Secret.objects.create(text="before", date=datetime.date(2000, 1, 1))
    first_stored = _raw_row(secret.pk)["text"]

    secret.text = "after"
    secret.data = {"visits": [1, 2]}
    secret.save()

    reloaded = Secret.objects.get(pk=secret.pk)
    assert (reloaded.text, reloaded.data) == ("after", {"visits": [1, 2]})
    assert _raw_row(secret.pk)["text"] != first_stored
    assert secret.text == "after"


@pytest.mark.django_db
def test_save_of_a_loaded_row_without_reading_its_values_keeps_them():
    secret = Secret.objects.create(
        text="Ada", char="MRN-1", date=datetime.date(1990, 5, 6), data={"a": 1}
    )
    loaded = Secret.objects.get(pk=secret.pk)

    loaded.label = "seen"
    loaded.save()

    reloaded = Secret.objects.get(pk=secret.pk)
    assert (reloaded.text, reloaded.char, reloaded.date, reloaded.data, reloaded.label) == (
        "Ada",
        "MRN-1",
        datetime.date(1990, 5, 6),
        {"a": 1},
        "seen",
    )


@pytest.mark.django_db
def test_update_fields_writes_only_the_named_encrypted_field():
    secret = Secret.objects.create(text="Ada", char="MRN-1", date=datetime.date(2000, 1, 1))
    char_before = _raw_row(secret.pk)["char"]

    secret.text = "Grace"
    secret.save(update_fields=["text"])

    assert _raw_row(secret.pk)["char"] == char_before
    assert Secret.objects.get(pk=secret.pk).text == "Grace"


@pytest.mark.django_db
def test_bulk_create_encrypts_with_each_rows_primary_key():
    rows = [Secret(text=f"patient {n}", date=datetime.date(2000, 1, n + 1)) for n in range(20)]

    Secret.objects.bulk_create(rows)

    loaded = {secret.pk: secret for secret in Secret.objects.all()}
    assert len(loaded) == 20
    for row in rows:
        assert loaded[row.pk].text == row.text
        assert loaded[row.pk].date == row.date
    assert rows[0].text == "patient 0"


@pytest.mark.django_db
def test_refresh_from_db_discards_unsaved_plaintext():
    secret = Secret.objects.create(text="saved", date=datetime.date(2000, 1, 1))
    secret.text = "unsaved"

    secret.refresh_from_db()

    assert secret.text == "saved"
    secret.refresh_from_db(fields=["text"])
    assert secret.text == "saved"


@pytest.mark.django_db
def test_only_and_defer_load_encrypted_fields_on_access():
    secret = Secret.objects.create(
        text="Ada", char="MRN-1", date=datetime.date(2000, 1, 1), data={"k": "v"}
    )

    only_pk = Secret.objects.only("pk").get(pk=secret.pk)
    assert "text" in only_pk.get_deferred_fields()
    assert only_pk.text == "Ada"
    assert only_pk.data == {"k": "v"}

    deferred = Secret.objects.defer("char", "date").get(pk=secret.pk)
    assert deferred.text == "Ada"
    assert deferred.char == "MRN-1"
    assert deferred.date == datetime.date(2000, 1, 1)

    partial = Secret.objects.only("char").get(pk=secret.pk)
    partial.char = "MRN-2"
    partial.save()
    reloaded = Secret.objects.get(pk=secret.pk)
    assert (reloaded.char, reloaded.text) == ("MRN-2", "Ada")


@pytest.mark.django_db
def test_values_and_values_list_return_the_stored_ciphertext_which_decrypt_stored_reads():
    secret = Secret.objects.create(text="Ada", date=datetime.date(1990, 5, 6))

    row = Secret.objects.values("pk", "text", "date", "text_nullable").get()
    flat = Secret.objects.values_list("text", flat=True).get()

    assert isinstance(row["text"], Ciphertext)
    assert row["text"] == _raw_row(secret.pk)["text"] == flat
    assert row["text_nullable"] is None
    field = Secret._meta.get_field("date")
    assert field.decrypt_stored(row["date"], pk=row["pk"]) == datetime.date(1990, 5, 6)


@pytest.mark.django_db
def test_queryset_update_and_bulk_update_with_plaintext_are_refused():
    secret = Secret.objects.create(text="Ada", date=datetime.date(2000, 1, 1))

    with pytest.raises(FieldError, match=r"only through Model\.save"), transaction.atomic():
        Secret.objects.filter(pk=secret.pk).update(text="Grace")
    secret.text = "Grace"
    with pytest.raises(FieldError, match=r"only through Model\.save"), transaction.atomic():
        Secret.objects.bulk_update([secret], ["text"])

    assert Secret.objects.get(pk=secret.pk).text == "Ada"
    assert Secret.objects.filter(pk=secret.pk).update(text_nullable=None) == 1


@pytest.mark.django_db
def test_copying_an_instance_by_clearing_its_pk_reencrypts_for_the_new_row():
    original = Secret.objects.create(text="Ada", data={"a": 1}, date=datetime.date(2000, 1, 1))
    copy = Secret.objects.get(pk=original.pk)

    copy.pk = None
    copy._state.adding = True
    copy.save()

    assert copy.pk != original.pk
    assert Secret.objects.get(pk=copy.pk).text == "Ada"
    assert Secret.objects.get(pk=copy.pk).data == {"a": 1}
    assert Secret.objects.get(pk=original.pk).text == "Ada"


@pytest.mark.django_db
def test_a_primary_key_given_as_text_binds_like_the_uuid_it_loads_as():
    pk = uuid.uuid4()

    Secret.objects.create(id=str(pk).upper(), text="Ada", date=datetime.date(2000, 1, 1))

    assert Secret.objects.get(pk=pk).text == "Ada"


@pytest.mark.django_db
def test_char_max_length_limits_the_plaintext_at_save_and_in_validation():
    too_long = Secret(char="x" * 65, date=datetime.date(2000, 1, 1))

    with pytest.raises(ValidationError) as caught:
        too_long.full_clean()
    assert "char" in caught.value.message_dict
    with (
        pytest.raises(ValueError, match=r"fieldtestapp\.Secret\.char holds 65 characters"),
        transaction.atomic(),
    ):
        too_long.save()
    Secret.objects.create(char="x" * 64, date=datetime.date(2000, 1, 1))


@pytest.mark.django_db
def test_date_accepts_iso_text_and_datetimes_like_a_date_field():
    secret = Secret.objects.create(
        date="2001-02-03", date_nullable=datetime.datetime(2001, 2, 4, 5)
    )

    loaded = Secret.objects.get(pk=secret.pk)

    assert loaded.date == datetime.date(2001, 2, 3)
    assert loaded.date_nullable == datetime.date(2001, 2, 4)


def test_columns_are_text_whatever_the_field_type():
    for name in ENCRYPTED:
        assert Secret._meta.get_field(name).db_type(connection) == "text"


def test_date_field_has_no_next_or_previous_by_date_methods():
    assert not hasattr(Secret, "get_next_by_date")
    assert not hasattr(Secret, "get_previous_by_date")


def test_encrypted_fields_deconstruct_to_their_own_path():
    _, path, _, kwargs = Secret._meta.get_field("char").deconstruct()

    assert path == "contactcenter.fields.EncryptedCharField"
    assert kwargs["max_length"] == 64


def test_test_model_passes_the_system_checks():
    assert Secret.check() == []


@isolate_apps("tests.fieldtestapp")
def test_system_check_refuses_encrypted_fields_on_a_model_with_an_auto_primary_key():
    class AutoKeyed(models.Model):  # noqa: DJ008
        note = EncryptedTextField()

        class Meta:
            app_label = "fieldtestapp"

    errors = AutoKeyed.check()

    assert [error.id for error in errors] == ["contactcenter.E001"]
    assert "fieldtestapp.AutoKeyed.note" in errors[0].msg
    assert "UUIDField" in errors[0].hint


@isolate_apps("tests.fieldtestapp")
def test_system_check_refuses_encrypted_fields_on_a_child_of_an_auto_keyed_model():
    class Parent(models.Model):  # noqa: DJ008
        class Meta:
            app_label = "fieldtestapp"

    class Child(Parent):  # noqa: DJ008
        note = EncryptedTextField()

        class Meta:
            app_label = "fieldtestapp"

    assert [error.id for error in Child.check()] == ["contactcenter.E001"]


@isolate_apps("tests.fieldtestapp")
def test_system_check_refuses_unique_or_indexed_encrypted_fields():
    class Indexed(models.Model):  # noqa: DJ008
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        mrn = EncryptedCharField(max_length=20, unique=True)
        when = EncryptedDateField(db_index=True)
        data = EncryptedJSONField(null=True)

        class Meta:
            app_label = "fieldtestapp"

    assert [error.id for error in Indexed.check()] == ["contactcenter.E002"] * 2


@pytest.mark.django_db
@isolate_apps("tests.fieldtestapp")
def test_save_without_a_primary_key_is_refused():
    class NoDefault(models.Model):  # noqa: DJ008
        id = models.UUIDField(primary_key=True)
        note = EncryptedTextField()

        class Meta:
            app_label = "fieldtestapp"

    with pytest.raises(ValueError, match="primary key must be set before saving"):
        NoDefault(note="Ada").save()


def test_encrypt_value_and_decrypt_stored_agree_outside_the_orm():
    field = Secret._meta.get_field("data")
    pk = uuid.uuid4()

    stored = field.encrypt_value({"a": [1, None]}, pk=pk)

    assert crypto.key_id_of(stored) == "test1"
    assert field.decrypt_stored(stored, pk=str(pk)) == {"a": [1, None]}
    with pytest.raises(DecryptionError):
        field.decrypt_stored(stored, pk=uuid.uuid4())
