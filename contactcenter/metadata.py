from rest_framework.metadata import SimpleMetadata


class ApiMetadata(SimpleMetadata):
    """What `OPTIONS` answers: the view's name, description, media types (and,
    through DRF, the `Allow` header). DRF would also describe the request body of
    each writable method by building the view's serializer for the object at the
    URL, which some views have no serializer or object for; the body is
    documented, for every operation, in the OpenAPI schema at /api/schema/."""

    def determine_metadata(self, request, view):
        return {
            "name": view.get_view_name(),
            "description": view.get_view_description(),
            "renders": [renderer.media_type for renderer in view.renderer_classes],
            "parses": [parser.media_type for parser in view.parser_classes],
        }
