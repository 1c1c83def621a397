"""The audit trail page: every role may read it; filters, pages and CSV export."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from imports.audit.records import audit_record
from imports.models import AuditEvent


def make_events(count: int) -> None:
    for i in range(count):
        audit_record(
            actor=None,
            action=AuditEvent.Action.SCAN_STARTED,
            summary=f"Started a scan of s3://b/p{i}/",
        )


def test_viewers_read_the_trail_in_pages(
    client_bob: Client, django_assert_max_num_queries: Any
) -> None:
    make_events(60)
    with django_assert_max_num_queries(8):
        content = client_bob.get("/audit/").content.decode()
    assert "61 events" in content  # and bob's sign-in
    assert "Page 1 of 2" in content
    assert content.count("<tr>") == 1 + 50


def test_it_filters_by_action_user_text_and_date(
    client_bob: Client, bob: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events cannot be back-dated once written, so the oldest is written at a clock set back.
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now - timedelta(days=10))
    audit_record(
        actor=None,
        action=AuditEvent.Action.SCAN_STARTED,
        summary="Started a scan of s3://b/old/",
    )
    monkeypatch.undo()
    make_events(3)
    audit_record(
        actor=bob,
        action=AuditEvent.Action.PHI_REVEALED,
        summary="Revealed patient names and IDs in the scan of s3://b/x/",
    )
    assert (
        "1 event"
        in client_bob.get("/audit/", {"action": "phi.revealed"}).content.decode()
    )
    assert (
        "2 events" in client_bob.get("/audit/", {"actor": "bo"}).content.decode()
    )  # sign-in and reveal
    assert "1 event" in client_bob.get("/audit/", {"q": "p2/"}).content.decode()
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert (
        "5 events"  # not the old scan: three scans, the reveal, bob's sign-in
        in client_bob.get("/audit/", {"since": since, "action": ""}).content.decode()
    )
    until = (timezone.now() - timedelta(days=5)).date().isoformat()
    content = client_bob.get("/audit/", {"until": until}).content.decode()
    assert "1 event" in content
    assert "s3://b/old/" in content


def test_it_explains_an_impossible_date_range(client_bob: Client) -> None:
    content = client_bob.get(
        "/audit/", {"since": "2026-02-01", "until": "2026-01-01"}
    ).content.decode()
    assert "“From” is after “To”" in content
    assert "0 events" not in content  # nothing is listed, and it says why instead


def test_it_answers_htmx_with_the_table_only(client_bob: Client) -> None:
    content = client_bob.get("/audit/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in content
    assert content.lstrip().startswith('<section id="audit-table"')


def test_it_exports_the_filtered_trail_as_csv(client_bob: Client) -> None:
    make_events(3)
    response = client_bob.get("/audit/export.csv", {"q": "p1/"})
    rows = list(
        csv.DictReader(
            io.StringIO(b"".join(response.streaming_content).decode())  # type: ignore[attr-defined]
        )
    )
    assert list(rows[0]) == [
        "id", "created_at", "actor_id", "actor_username", "action", "target_type", "target_id",
        "summary", "details", "ip", "user_agent", "previous_hash", "hash",
    ]  # fmt: skip
    assert [(r["actor_username"], r["action"], r["summary"]) for r in rows] == [
        ("system", "scan.started", "Started a scan of s3://b/p1/")
    ]
    assert json.loads(rows[0]["details"]) == {}
    assert len(rows[0]["hash"]) == 64


def test_a_user_without_a_role_cannot_read_it(nobody: Any) -> None:
    client = Client()
    client.force_login(nobody)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403


def test_sign_ins_sign_outs_and_failures_are_recorded(
    client: Client, alice: Any
) -> None:
    client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    client.post(
        "/accounts/login/",
        {"username": "alice", "password": "correct horse battery staple"},
    )
    client.post("/accounts/logout/")
    events = list(
        AuditEvent.objects.order_by("id").values_list(
            "action", "actor_username", "summary"
        )
    )
    assert events == [
        ("user.sign_in_failed", "system", "Failed sign-in as “alice”"),
        ("user.signed_in", "alice", "Signed in"),
        ("user.signed_out", "alice", "Signed out"),
    ]
    assert "wrong" not in str(AuditEvent.objects.values_list("details", flat=True)[0])


def test_role_and_account_changes_in_the_admin_are_audited(
    client_carol: Client, bob: Any
) -> None:
    from django.contrib.auth.models import Group

    operator = Group.objects.get(name="Operator")
    response = client_carol.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {
            "username": "bob",
            "email": "bob@example.org",
            "is_active": "on",
            "groups": [operator.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_CHANGED)
    assert event.actor_username == "carol"
    assert event.summary.startswith("Changed user “bob”: Changed ")
    assert "Groups" in event.summary
    client_carol.post(f"/admin/auth/user/{bob.pk}/delete/", {"post": "yes"})
    assert (
        AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_DELETED).summary
        == "Deleted user “bob”"
    )


def field_error(content: str, field: str) -> str:
    """The error shown next to one filter field ("" if none)."""
    marker = f'id="audit-filter-error-{field}"'
    if marker not in content:
        return ""
    return content.split(marker)[1].split(">", 1)[1].split("</p>")[0].strip()


def test_an_impossible_date_range_lists_nothing_and_says_why_next_to_to(
    client_bob: Client,
) -> None:
    make_events(3)
    content = client_bob.get(
        "/audit/", {"since": "2026-02-01", "until": "2026-01-01"}
    ).content.decode()
    assert (
        field_error(content, "until")
        == "“From” is after “To”: choose a start date on or before the end date."
    )
    assert "Nothing is listed until the filters marked above are corrected." in content
    assert "Started a scan" not in content


def test_an_unknown_action_lists_nothing_and_says_why(client_bob: Client) -> None:
    make_events(3)
    content = client_bob.get("/audit/", {"action": "bogus"}).content.decode()
    assert (
        field_error(content, "action")
        == "“bogus” is not an action of the audit trail; choose one from the list."
    )
    assert "Started a scan" not in content


def test_a_date_that_is_not_iso_lists_nothing_and_says_which_form_to_use(
    client_bob: Client,
) -> None:
    make_events(3)
    for value in ("notadate", "01/02/2026"):
        content = client_bob.get("/audit/", {"since": value}).content.decode()
        assert (
            field_error(content, "since")
            == "Enter the date as YYYY-MM-DD, for example 2026-01-31."
        )
        assert "Started a scan" not in content


def test_the_date_filters_are_labelled_with_the_tables_format(
    client_bob: Client,
) -> None:
    content = client_bob.get("/audit/").content.decode()
    assert (
        '<label for="id_since">From <span class="muted">(YYYY-MM-DD)</span></label>'
        in content
    )
    assert (
        '<input type="text" name="since" placeholder="YYYY-MM-DD" inputmode="numeric"'
        in content
    )


def test_an_htmx_filter_change_shows_the_error_next_to_its_field(
    client_bob: Client,
) -> None:
    content = client_bob.get(
        "/audit/", {"action": "bogus"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert content.lstrip().startswith('<section id="audit-table"')
    assert field_error(content, "action").startswith("“bogus” is not an action")


def test_an_invalid_filter_exports_nothing_and_says_why(client_bob: Client) -> None:
    make_events(3)
    response = client_bob.get("/audit/export.csv", {"since": "notadate"})
    assert response.status_code == 400
    assert response.content.decode() == (
        "Nothing was exported: From: Enter the date as YYYY-MM-DD, for example 2026-01-31."
    )


def test_a_history_restore_gets_the_whole_page_not_the_fragment(
    client_bob: Client,
) -> None:
    """Back to a page htmx no longer caches: htmx asks again and replaces the whole body."""
    response = client_bob.get(
        "/audit/",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in response.content.decode()
    assert "HX-Request" in response["Vary"]
