"""Refusals and errors: the site's layout, what is needed or missing, a way back, one log line."""

from __future__ import annotations

import logging

import pytest
from django.test import Client, override_settings

from imports.models import Datastore


def test_a_refused_page_has_the_layout_and_names_the_role_needed(
    client_bob: Client, datastore: Datastore
) -> None:
    response = client_bob.get("/browse/")
    content = response.content.decode()
    assert response.status_code == 403
    assert '<nav class="nav" aria-label="Main">' in content  # the site's navigation
    assert "This needs the Administrator or Operator role." in content
    assert "You are signed in as <strong>bob</strong>, with the Viewer role." in content
    assert '<a href="/">Back to the dashboard</a>' in content


def test_a_user_without_a_role_is_told_so(nobody: object) -> None:
    client = Client()
    client.force_login(nobody)  # type: ignore[arg-type]
    content = client.get("/").content.decode()
    assert "This needs the Administrator or Operator or Viewer role." in content
    assert "with no role yet" in content


def test_a_refusal_logs_one_line_without_a_traceback(
    client_bob: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        client_bob.get("/browse/?uri=s3://bucket/secret/")
    records = [
        (r.name, r.getMessage(), r.exc_info)
        for r in caplog.records
        if r.name.startswith(("django.request", "imports.access"))
    ]
    assert records == [
        (
            "imports.access",
            "Refused GET /browse/ to user bob (needs imports.browse_datastore)",
            None,
        )
    ]


def test_an_htmx_refusal_is_a_fragment_swapped_in_place(client_bob: Client) -> None:
    response = client_bob.get("/browse/", headers={"HX-Request": "true"})
    content = response.content.decode()
    assert response.status_code == 403
    assert "<html" not in content
    assert content.lstrip().startswith('<section class="card refusal" role="alert">')
    assert "This needs the Administrator or Operator role." in content
    # Inside the target, which stays for the next request.
    assert response["HX-Reswap"] == "innerHTML"


def test_htmx_is_configured_to_swap_refusals(client_bob: Client) -> None:
    content = client_bob.get("/").content.decode()
    assert '{"code": "40[34]", "swap": true, "error": false}' in content


def test_a_missing_scan_has_a_styled_404_with_a_way_back(client_bob: Client) -> None:
    response = client_bob.get("/scans/999999/")
    content = response.content.decode()
    assert response.status_code == 404
    assert '<nav class="nav" aria-label="Main">' in content
    assert "No Scan matches the given query." in content
    assert '<a href="/scans/">All scans</a>' in content


def test_an_unknown_address_has_a_styled_404(client_bob: Client) -> None:
    response = client_bob.get("/no/such/page/")
    assert response.status_code == 404
    assert "There is nothing at" in response.content.decode()
    assert "/no/such/page/" in response.content.decode()


@override_settings(DEBUG=False)
def test_a_server_error_has_the_layout_and_a_way_back(
    client_bob: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imports.views import dashboard

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(dashboard, "render", broken)
    client_bob.raise_request_exception = False
    response = client_bob.get("/")
    content = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in content
    assert '<link rel="stylesheet" href="/static/css/app.css">' in content
    assert '<a href="/">Back to the dashboard</a>' in content
