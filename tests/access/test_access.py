"""Everything needs a login except the login page, and each role sees exactly what it may."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

SAMPLE_VALUES = {
    "int": "1",
    "str": "x",
    "slug": "x",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "path": "x/y",
}
# The admin site has its own login form; it signs in against the same accounts.
# The sign-in pages, the icon, the probes for load balancers and /metrics (behind its own bearer token).
PUBLIC = {
    "/accounts/login/",
    "/admin/login/",
    "/favicon.ico",
    "/healthz",
    "/readyz",
    "/metrics",
}


def all_urls() -> Iterator[str]:
    """Every URL the project routes, with sample values for its parameters."""

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + route)
            else:
                yield prefix + route

    for route in walk(get_resolver().url_patterns, "/"):
        route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\/", "/")
        route = re.sub(
            r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_VALUES[m.group(1) or "str"], route
        )
        route = re.sub(r"\(\?P<\w+>[^)]*\)", "x", route)  # the admin's regex routes
        yield route


URLS = sorted(set(all_urls()))


def test_the_url_list_covers_the_project() -> None:
    assert "/" in URLS
    assert "/admin/" in URLS
    assert "/accounts/login/" in URLS


@pytest.mark.parametrize("url", [u for u in URLS if u not in PUBLIC])
def test_every_url_requires_a_login(client: Client, url: str, db: None) -> None:
    response = client.get(url)
    assert response.status_code == 302, (
        f"{url} answered {response.status_code} to an anonymous user"
    )
    assert response["Location"].startswith(("/accounts/login/", "/admin/login/")), (
        response["Location"]
    )


def test_the_login_page_is_public(client: Client, db: None) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Sign in" in response.content


def test_an_expired_htmx_request_is_sent_to_the_login_page_as_a_whole_page(
    client: Client, db: None
) -> None:
    response = client.get(
        "/", headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=http%3A//testserver/"
    assert response.content == b""


def test_signing_in_leads_to_the_dashboard(client: Client, alice: object) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "correct horse battery staple"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_signing_out_needs_a_post(client_alice: Client) -> None:
    assert client_alice.get("/accounts/logout/").status_code == 405
    assert client_alice.post("/accounts/logout/").status_code == 302
    assert client_alice.get("/").status_code == 302


@pytest.mark.parametrize(
    ("role_client", "dashboard", "admin_index", "datastore_add", "users"),
    [
        ("client_bob", 200, 302, 302, 302),  # viewer
        ("client_alice", 200, 302, 302, 302),  # operator
        ("client_carol", 200, 200, 200, 200),  # administrator
    ],
)
def test_each_role_reaches_what_it_may(
    request: pytest.FixtureRequest,
    role_client: str,
    dashboard: int,
    admin_index: int,
    datastore_add: int,
    users: int,
) -> None:
    client: Client = request.getfixturevalue(role_client)
    assert client.get("/").status_code == dashboard
    assert client.get("/admin/").status_code == admin_index
    assert client.get("/admin/imports/datastore/add/").status_code == datastore_add
    assert client.get("/admin/auth/user/").status_code == users


def test_a_user_without_a_role_sees_nothing(nobody: object) -> None:
    client = Client()
    client.force_login(nobody)  # type: ignore[arg-type]
    assert client.get("/").status_code == 403


def test_only_administrators_see_the_admin_link(
    client_alice: Client, client_carol: Client
) -> None:
    assert b'href="/admin/"' not in client_alice.get("/").content
    assert b'href="/admin/"' in client_carol.get("/").content


def test_the_audit_trail_cannot_be_edited_even_by_an_administrator(
    client_carol: Client,
) -> None:
    assert client_carol.get("/admin/imports/auditevent/").status_code == 200
    assert client_carol.get("/admin/imports/auditevent/add/").status_code == 403


def test_pages_carry_a_same_origin_content_security_policy(client_bob: Client) -> None:
    policy = client_bob.get("/")["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy


def test_htmx_sends_the_csrf_token_from_the_body(client_bob: Client) -> None:
    content = client_bob.get("/").content.decode()
    assert re.search(
        r"<body hx-headers='\{\"x-csrftoken\": \"[A-Za-z0-9]+\"\}'>", content
    )
    # The script itself, not merely the word "htmx" (which <meta name="htmx-config"> carries on every page).
    assert re.search(r'<script src="/static/django_htmx/htmx-2(\.min)?\.js"', content)


def test_an_administrator_signs_in_through_the_admin_login_form(
    client: Client, carol: object
) -> None:
    response = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": "carol",
            "password": "correct horse battery staple",
            "next": "/admin/",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_admin_login_form_turns_away_other_roles_with_a_reason(
    client: Client, alice: object
) -> None:
    response = client.post(
        "/admin/login/",
        {"username": "alice", "password": "correct horse battery staple"},
    )
    assert response.status_code == 200
    assert "only the Administrator role may" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_favicon_is_public(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"


def test_no_template_comment_leaks_into_a_page(client_bob: Client) -> None:
    # Django's {# #} comments end at the line: a two-line one is printed as text.
    content = client_bob.get("/").content.decode()
    assert "{#" not in content
    assert "#}" not in content
