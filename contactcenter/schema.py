"""The OpenAPI schema's view of what every operation can answer besides success:
each 4xx the API gives, in the one error shape (contactcenter/errors.py), and the
`Idempotency-Key` header where a POST creates something."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from contactcenter.idempotency import HEADER, IdempotentCreateMixin

_ERROR_DESCRIPTIONS = {
    "400": "Refused input: a field, filter, cursor or header the API does not accept "
    "(`details` names each).",
    "401": "No credential, or one that is invalid, expired or revoked.",
    "403": "The role or the API key's scopes do not allow this.",
    "404": "No such record among those the caller may see.",
    "409": "The request conflicts with the record's state (a duplicate, a merged "
    "patient, a resolved conversation).",
    "422": f"The {HEADER} was used in the last 24 hours with another request.",
    "429": "Too many requests: wait the `Retry-After` seconds.",
}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: `invalid`, `not_found`, ...")
    message = serializers.CharField()
    details = serializers.JSONField(help_text="Per field or parameter, the reasons it was refused.")
    request_id = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def _is_idempotent_create(view, method):
    return method == "POST" and isinstance(view, IdempotentCreateMixin)


class ApiAutoSchema(AutoSchema):
    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if _is_idempotent_create(self.view, self.method):
            parameters.append(
                OpenApiParameter(
                    HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    description="1 to 255 visible ASCII characters. The first successful "
                    "answer to this key is replayed (with `Idempotent-Replayed: true`) for "
                    "24 hours; the same key with another body is a 422.",
                )
            )
        return parameters

    def _error_codes(self):
        codes = ["400", "401", "403", "404", "429"]
        if self.method in _WRITES:
            codes.append("409")
        if _is_idempotent_create(self.view, self.method):
            codes.append("422")
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code in responses:
                continue
            response = self._get_response_for_code(
                ErrorSerializer, code, media_types=["application/json"], direction=direction
            )
            response["description"] = _ERROR_DESCRIPTIONS[code]
            if code == "429":
                response["headers"] = {
                    "Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "Seconds until a request is accepted again.",
                    }
                }
            responses[code] = response
        return responses
