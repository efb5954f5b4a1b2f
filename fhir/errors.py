"""Every error of the FHIR interface is an OperationOutcome."""

from rest_framework import status

from fhir.resources.R4B.operationoutcome import OperationOutcome


class FhirError(Exception):
    """An error answered as an OperationOutcome with `code` from the FHIR
    issue-type value set (invalid, not-found, forbidden, login, ...)."""

    def __init__(self, diagnostics, *, http_status, code, expression=None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.http_status = http_status
        self.code = code
        self.expression = expression


def invalid(diagnostics, *, expression=None):
    return FhirError(
        diagnostics, http_status=status.HTTP_400_BAD_REQUEST, code="invalid", expression=expression
    )


def not_found(diagnostics="No such resource among those this client may see."):
    return FhirError(diagnostics, http_status=status.HTTP_404_NOT_FOUND, code="not-found")


def forbidden(diagnostics):
    return FhirError(diagnostics, http_status=status.HTTP_403_FORBIDDEN, code="forbidden")


def conflict(diagnostics):
    return FhirError(diagnostics, http_status=status.HTTP_409_CONFLICT, code="conflict")


def outcome(diagnostics, *, code, severity="error", expression=None):
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return OperationOutcome(issue=[issue])


def outcome_of(error):
    return outcome(error.diagnostics, code=error.code, expression=error.expression)
