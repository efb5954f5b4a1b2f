"""The CapabilityStatement at /fhir/metadata and the SMART configuration, both
generated from the registry the views check requests against."""

from django.conf import settings
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from fhir import registry, services
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.scopes import CLIENT_SCOPE_GRANTS

# The release these resources follow (fhir.resources' R4B models are structurally
# R4 for every resource served here).
FHIR_VERSION = "4.0.1"
SMART_CODING = {
    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
    "code": "SMART-on-FHIR",
}


class JsonRenderer(JSONRenderer):
    """OAuth and SMART discovery answer plain JSON."""


def _scopes_supported():
    scopes = set()
    for grants in CLIENT_SCOPE_GRANTS.values():
        for rtype, letters in grants.items():
            if rtype in registry.RESOURCES:
                scopes.add(f"system/{rtype}.{letters}")
    return sorted(scopes)


def capability_statement(*, base_url):
    resources = []
    for spec in registry.RESOURCES.values():
        entry = {
            "type": spec.type,
            "documentation": spec.documentation or None,
            "interaction": [{"code": code} for code in spec.interactions],
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in spec.search_params
            ]
            or None,
        }
        if "update" in spec.interactions:
            entry["conditionalUpdate"] = True
            entry["updateCreate"] = False
        if spec.operations:
            entry["operation"] = [
                {"name": name, "definition": definition} for name, definition in spec.operations
            ]
        resources.append(entry)
    return CapabilityStatement.model_validate(
        {
            "status": "active",
            "date": timezone.now().date().isoformat(),
            "publisher": settings.PRACTICE_NAME,
            "kind": "instance",
            "implementation": {"description": "contactcenter FHIR interface", "url": base_url},
            "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        f"Searches page by {registry.COUNT_PARAM} (default "
                        f"{registry.DEFAULT_COUNT}, at most {registry.MAX_COUNT}) and follow "
                        "the Bundle's next link."
                    ),
                    "security": {
                        "service": [{"coding": [SMART_CODING]}],
                        "description": "SMART Backend Services (private_key_jwt, RS384 or "
                        "ES384) or an API key, as a bearer token.",
                        "extension": [
                            {
                                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                "extension": [
                                    {"url": "token", "valueUri": f"{base_url}/auth/token"}
                                ],
                            }
                        ],
                    },
                    "resource": resources,
                }
            ],
        }
    )


def smart_configuration(*, base_url):
    return {
        "token_endpoint": f"{base_url}/auth/token",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(services.SIGNING_ALGORITHMS),
        "scopes_supported": _scopes_supported(),
        "capabilities": ["client-confidential-asymmetric"],
    }
