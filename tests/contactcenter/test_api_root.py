"""/api/v1/ lists every resource: each route of the URLconf under /api/v1/ that
takes no parameter, read from the URLconf itself."""

from django.urls import URLPattern, URLResolver, get_resolver


def _parameterless_api_paths(patterns=None, prefix=""):
    paths = set()
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            paths |= _parameterless_api_paths(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/") and "<" not in route:
            paths.add("/" + route)
    return paths - {"/api/v1/"}


def test_the_root_links_every_parameterless_route_of_the_urlconf(client):
    links = client.get("/api/v1/").json()["links"]

    linked = {url.removeprefix("http://testserver") for url in links.values()}
    assert _parameterless_api_paths() <= linked
    assert {"conversations", "inbox/counts", "patients", "escalations", "reports/kpis"} <= set(
        links
    )
    assert links["conversations"] == "http://testserver/api/v1/conversations/"
    assert links["inbox/counts"] == "http://testserver/api/v1/inbox/counts/"


def test_the_root_needs_no_credentials_and_names_the_schema_and_docs(client):
    response = client.get("/api/v1/")

    assert response.status_code == 200
    assert response.json()["links"]["schema"] == "http://testserver/api/schema/"
    assert response.json()["links"]["docs"] == "http://testserver/api/docs/"
