# `fhir.resources` (the FHIR models this app builds on) is a namespace package
# named `fhir` too: extending this package's path lets both import side by side.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
