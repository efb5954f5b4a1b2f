import uuid

from django.db import models

from contactcenter.blind_index import BlindIndexField
from contactcenter.fields import (
    EncryptedCharField,
    EncryptedDateField,
    EncryptedJSONField,
    EncryptedTextField,
)


class Secret(models.Model):
    """Each encrypted field type, required and nullable, and a blind index."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    text = EncryptedTextField(blank=True, default="")
    text_nullable = EncryptedTextField(null=True, blank=True)
    char = EncryptedCharField(max_length=64, blank=True, default="")
    char_nullable = EncryptedCharField(max_length=64, null=True, blank=True)
    date = EncryptedDateField()
    date_nullable = EncryptedDateField(null=True, blank=True)
    data = EncryptedJSONField(default=dict, blank=True)
    data_nullable = EncryptedJSONField(null=True, blank=True)
    phone = EncryptedCharField(max_length=32, null=True, blank=True)
    phone_index = BlindIndexField(null=True, blank=True)
    label = models.CharField(max_length=32, blank=True, default="")

    def __str__(self):
        return f"Secret {self.pk}"
