"""application/fhir+json in and out."""

import json

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer

from fhir.resources.R4B.resource import Resource

FHIR_JSON = "application/fhir+json"


class FhirJsonRenderer(BaseRenderer):
    media_type = FHIR_JSON
    format = "json"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if isinstance(data, Resource):
            return data.model_dump_json().encode()
        return json.dumps(data, separators=(",", ":")).encode()


class FhirJsonParser(JSONParser):
    media_type = FHIR_JSON


class AlwaysFhirJson(BaseContentNegotiation):
    """Every answer is FHIR JSON, whatever Accept says (clients send
    application/json, application/fhir+json or */*; XML is not served, and a
    406 would be an error no FHIR client expects for JSON it can read)."""

    def select_parser(self, request, parsers):
        content_type = request.content_type.split(";")[0].strip()
        return next((p for p in parsers if p.media_type == content_type), None)

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
