"""What each audit event records (IP address, user agent), exports and their own events, the audit
page's target filters, and the streamed CSV and JSON Lines exports."""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from imports.audit.chain import GENESIS, event_hash
from imports.audit.keys import audit_key
from imports.audit.records import audit_record, client_ip
from imports.models import AuditEvent, Datastore, ImportDraft
from imports.scanning import control
from imports.views.audit import EXPORT_CHUNK
from tests.conftest import PASSWORD

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


# --- Where from: IP address and user agent ----------------------------------------------------


def test_a_sign_in_and_a_failed_one_record_the_ip_and_user_agent(
    alice: User,
) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7", headers={"user-agent": BROWSER})
    client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert list(
        AuditEvent.objects.order_by("id").values_list("action", "ip", "user_agent")
    ) == [
        ("user.sign_in_failed", "203.0.113.7", BROWSER),
        ("user.signed_in", "203.0.113.7", BROWSER),
    ]


def test_starting_a_scan_records_the_ip_and_user_agent(client_alice: Client) -> None:
    response = client_alice.post(
        "/scans/start/",
        {"uri": "s3://dicom-input/incoming/"},
        REMOTE_ADDR="2001:db8::7",
        HTTP_USER_AGENT=BROWSER,
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditEvent.Action.SCAN_STARTED)
    assert (event.actor_username, event.ip, event.user_agent) == (
        "alice",
        "2001:db8::7",
        BROWSER,
    )


def test_an_event_outside_a_request_has_no_ip_or_user_agent(db: None) -> None:
    control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    event = AuditEvent.objects.get()
    assert (event.actor_username, event.ip, event.user_agent) == ("system", "", "")


def test_a_hostile_user_agent_is_cut_short_and_cleaned(client_alice: Client) -> None:
    client_alice.post(
        "/scans/start/",
        {"uri": "s3://dicom-input/incoming/"},
        HTTP_USER_AGENT="evil\x00" + "x" * 2000,
    )
    event = AuditEvent.objects.get(action=AuditEvent.Action.SCAN_STARTED)
    assert event.user_agent == ("evil" + "x" * 2000)[:512]


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # No proxy trusted: X-Forwarded-For is whatever the client wrote, and ignored.
        (0, "192.0.2.10", "198.51.100.1", "192.0.2.10"),
        # One proxy: the address it saw is the last entry; the first is the client's claim.
        (1, "10.0.0.2", "198.51.100.1, 192.0.2.44", "192.0.2.44"),
        (2, "10.0.0.2", "198.51.100.1, 192.0.2.44, 10.0.0.9", "192.0.2.44"),
        # Fewer entries than proxies: a misconfiguration, so the direct peer is recorded.
        (2, "10.0.0.2", "192.0.2.44", "10.0.0.2"),
        # Not an address at all.
        (1, "10.0.0.2", "<script>", ""),
        (0, "", "", ""),
    ],
)
def test_the_client_address_is_taken_from_the_trusted_hop_only(
    settings: Any, proxies: int, remote: str, forwarded: str, expected: str
) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get(
        "/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded
    )
    assert client_ip(request) == expected


# --- Exports are audited: what and which filters, never the rows ----------------------------


def test_a_scan_export_is_audited(client_bob: Client) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    body(client_bob.get(f"/scans/{scan.pk}/objects.csv"))
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORTED)
    assert (event.actor_username, event.target_type, event.target_id) == (
        "bob",
        "imports.scan",
        str(scan.pk),
    )
    assert event.summary == "Exported the objects of the scan of s3://b/p/ as CSV"
    assert event.details == {
        "export": "the objects of the scan of s3://b/p/",
        "format": "csv",
        "filters": {},
    }


def test_a_draft_mappings_export_is_audited(
    client_alice: Client, alice: User, datastore: Datastore
) -> None:
    draft = ImportDraft.objects.create(
        datastore=datastore,
        input_s3_uri=datastore.input_s3_uri,
        output_s3_uri=datastore.output_s3_uri,
        job_name="knees",
        owner=alice,
    )
    body(client_alice.get(f"/drafts/{draft.pk}/mappings.csv"))
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORTED)
    assert (event.target_type, event.target_id) == (
        "imports.importdraft",
        str(draft.pk),
    )
    assert event.details["export"] == f"the mappings of import draft {draft.pk}"


@pytest.mark.parametrize(
    ("url", "export_format"),
    [("/audit/export.csv", "csv"), ("/audit/export.jsonl", "jsonl")],
)
def test_an_audit_export_is_audited_with_its_filters(
    client_bob: Client, url: str, export_format: str
) -> None:
    body(client_bob.get(url, {"action": "scan.started", "q": "p1/", "actor": ""}))
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORTED)
    assert event.details == {
        "export": "the audit trail",
        "format": export_format,
        "filters": {"action": "scan.started", "q": "p1/"},
    }
    assert event.summary == (
        f"Exported the audit trail as {export_format.upper()} (action, q filtered)"
    )


def test_an_export_with_an_invalid_filter_exports_nothing_and_says_why(
    client_bob: Client,
) -> None:
    response = client_bob.get("/audit/export.jsonl", {"since": "2026-13-45"})
    assert response.status_code == 400
    assert (
        response.content.decode()
        == "Nothing was exported: From: Enter the date as YYYY-MM-DD, for example 2026-01-31."
    )
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED).exists()


# --- The JSON Lines export ------------------------------------------------------------------


def test_the_jsonl_export_holds_each_event_whole_and_the_chain_can_be_rechecked_from_it(
    client_bob: Client, bob: User
) -> None:
    audit_record(
        actor=bob,
        action=AuditEvent.Action.PHI_REVEALED,
        summary="Revealed patient names and IDs in the scan of s3://b/x/",
        details={"où": ["é", 1]},
    )
    response = client_bob.get("/audit/export.jsonl")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit-trail.jsonl"'
    lines = [json.loads(line) for line in body(response).splitlines()]
    # bob's sign-in, the reveal, and the export itself, newest first.
    assert [line["action"] for line in lines] == [
        "data.exported",
        "phi.revealed",
        "user.signed_in",
    ]
    reveal = lines[1]
    assert reveal["details"] == {"où": ["é", 1]}
    assert reveal["actor_username"] == "bob"
    previous = GENESIS
    for line in reversed(lines):
        fields = {**line, "created_at": datetime.fromisoformat(line["created_at"])}
        assert line["previous_hash"] == previous
        assert (
            event_hash(key=audit_key(), previous_hash=previous, fields=fields)
            == line["hash"]
        )
        previous = line["hash"]


# --- Streaming: memory does not grow with the number of rows -------------------------------


def insert_events(count: int) -> None:
    """Rows written straight to the table: the export is under test here, not the chain."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO imports_auditevent (created_at, actor_username, action, target_type,"
            " target_id, summary, details, ip, user_agent, previous_hash, hash)"
            " VALUES (%s, 'system', 'scan.started', '', '', %s, %s, '', '', '', '')",
            [
                (now, f"Started a scan of s3://b/p{i}/", json.dumps({"i": i}))
                for i in range(count)
            ],
        )


def peak_memory_of_download(client: Client, url: str) -> tuple[int, int]:
    """(peak bytes allocated while the download is read, lines read)."""
    tracemalloc.start()
    try:
        response = client.get(url)
        assert response.streaming
        lines = 0
        for chunk in response.streaming_content:  # type: ignore[attr-defined]
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, lines


@pytest.mark.parametrize("url", ["/audit/export.csv", "/audit/export.jsonl"])
def test_an_export_streams_at_flat_memory_whatever_the_row_count(
    client_bob: Client, url: str
) -> None:
    # Two chunks' worth of rows, then five times as many: a response built in memory would need
    # about five times the memory; a streamed one holds about a chunk at a time. (Up to one chunk
    # the two cannot be told apart, hence two.) A first download warms the caches that every
    # request fills once.
    insert_events(2 * EXPORT_CHUNK)
    peak_memory_of_download(client_bob, url)
    small, small_lines = peak_memory_of_download(client_bob, url)
    insert_events(8 * EXPORT_CHUNK)
    large, large_lines = peak_memory_of_download(client_bob, url)
    assert (
        large_lines - small_lines == 8 * EXPORT_CHUNK + 1
    )  # + the second export's event
    assert large < 1.5 * small, f"{small=} {large=}"


# --- The audit page: target filters, and invalid filters --------------------------------


def test_it_filters_by_target_type_and_id(
    client_bob: Client, datastore: Datastore
) -> None:
    scans = [
        control.scan_start(
            actor=None, bucket="b", prefix=f"p{i}/", region="us-east-1", enqueue=False
        )[0]
        for i in range(2)
    ]
    audit_record(
        actor=None,
        action=AuditEvent.Action.DATASTORE_CHECKED,
        target=datastore,
        summary="Checked",
    )
    page = client_bob.get("/audit/").content.decode()
    assert '<option value="imports.scan">scan</option>' in page
    assert '<option value="imports.datastore">datastore</option>' in page
    by_type = client_bob.get("/audit/", {"target_type": "imports.scan"})
    assert "2 events" in by_type.content.decode()
    by_id = client_bob.get(
        "/audit/", {"target_type": "imports.scan", "target_id": str(scans[1].pk)}
    ).content.decode()
    assert "1 event" in by_id
    assert "s3://b/p1/" in by_id
    assert "s3://b/p0/" not in by_id


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"target_id": "1; DROP"}, "target_id", "A target ID is made of letters"),
        ({"target_type": "auth.secret"}, "target_type", "Select a valid choice"),
        ({"action": "nope"}, "action", "is not an action of the audit trail"),
        ({"since": "2026-02-30"}, "since", "Enter the date as YYYY-MM-DD"),
        (
            {"since": "2026-02-01", "until": "2026-01-01"},
            "until",
            "“From” is after “To”",
        ),
    ],
)
def test_an_invalid_filter_lists_nothing_and_says_why_next_to_the_field(
    client_bob: Client, params: dict[str, str], field: str, message: str
) -> None:
    audit_record(
        actor=None, action=AuditEvent.Action.SCAN_STARTED, summary="Started a scan"
    )
    content = client_bob.get("/audit/", params).content.decode()
    slot = content.split(f'id="audit-filter-error-{field}"', 1)[1].split("</p>", 1)[0]
    assert message in slot
    assert "Nothing is listed until the filters marked above are corrected." in content
    assert "Started a scan" not in content
    htmx = client_bob.get("/audit/", params, headers={"HX-Request": "true"})
    fragment = htmx.content.decode()
    assert fragment.lstrip().startswith('<section id="audit-table"')
    oob = fragment.split(f'id="audit-filter-error-{field}"', 1)[1].split("</p>", 1)[0]
    assert 'hx-swap-oob="true"' in oob
    assert message in oob
