"""The browse and scan pages: thin views over the services, htmx fragments, no N+1 queries."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from imports.models import AuditEvent, Datastore, Scan
from imports.scanning import control, run
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.7"


def table_rows(content: str) -> dict[str, list[str]]:
    """The rows of a page's tables as the text of their cells, keyed by the first cell."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", content, re.S):
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cells:
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def demo_bucket(localaws: LocalAWSHandle, datastore: Datastore) -> LocalAWSHandle:
    localaws.create_bucket("dicom-input")
    localaws.put(
        "s3://dicom-input/incoming/p1/a.dcm",
        dicom_bytes(study=STUDY, series=STUDY + ".1", PatientName="DOE^JOHN"),
    )
    localaws.put(
        "s3://dicom-input/incoming/p1/b.dcm",
        dicom_bytes(study=STUDY, series=STUDY + ".1", PatientName="DOE^JOHN"),
    )
    localaws.put(
        "s3://dicom-input/incoming/noext", dicom_bytes(study=STUDY, series=STUDY + ".2")
    )
    localaws.put(
        "s3://dicom-input/incoming/meta.json",
        {"0020000D": {"vr": "UI", "Value": [STUDY]}},
    )
    localaws.put("s3://dicom-input/incoming/readme", b"plain text")
    return localaws


def test_browse_opens_the_datastore_input_folder(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    response = client_alice.get("/browse/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "p1/" in content
    assert "meta.json" in content
    rows = table_rows(content)
    assert rows["noext"][1] == "dicom"
    assert rows["meta.json"][1] == "json"
    assert rows["readme"][1] == "other"
    assert rows["p1/"][1] == "folder"


def test_browse_answers_htmx_with_the_listing_fragment_only(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    response = client_alice.get(
        "/browse/",
        {"uri": "s3://dicom-input/incoming/p1/"},
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    # The form is part of the fragment, so that the URI field follows the folder shown.
    assert content.lstrip().startswith('<div id="browse">')
    assert 'value="s3://dicom-input/incoming/p1/"' in content
    assert "a.dcm" in content
    assert "b.dcm" in content


def test_browse_links_work_without_javascript(
    client_alice: Client, demo_bucket: LocalAWSHandle, datastore: Datastore
) -> None:
    content = client_alice.get("/browse/").content.decode()
    expected = f'href="/browse/?datastore={datastore.pk}&amp;uri=s3%3A%2F%2Fdicom-input%2Fincoming%2Fp1%2F"'
    assert expected in content


def test_browse_pages_through_a_large_folder(
    client_alice: Client, localaws: LocalAWSHandle, datastore: Datastore
) -> None:
    localaws.create_bucket("dicom-input")
    s3 = localaws.s3_client()
    for i in range(1003):
        s3.put_object(Bucket="dicom-input", Key=f"incoming/{i:05}.dcm", Body=b"x")
    first = client_alice.get("/browse/").content.decode()
    assert "00999.dcm" in first
    assert "01000.dcm" not in first
    assert "Page 1 · 0 folders, 1000 objects" in first
    second = client_alice.get(
        "/browse/",
        {
            "datastore": str(datastore.pk),
            "uri": "s3://dicom-input/incoming/",
            "page": "2",
        },
    )
    content = second.content.decode()
    assert "01000.dcm" in content
    assert "00999.dcm" not in content
    assert "← Previous" in content
    back = client_alice.get(
        "/browse/",
        {
            "datastore": str(datastore.pk),
            "uri": "s3://dicom-input/incoming/",
            "page": "1",
        },
    )
    assert "00000.dcm" in back.content.decode()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://dicom-input/", "is not an S3 URI HealthImaging accepts"),
        (
            "s3://no-such-bucket/x/",
            "Bucket “no-such-bucket” does not exist.",
        ),
    ],
)
def test_browse_explains_a_bad_uri(
    client_alice: Client, localaws: LocalAWSHandle, uri: str, message: str
) -> None:
    response = client_alice.get("/browse/", {"uri": uri})
    assert response.status_code == 200
    assert message in response.content.decode()


def test_browse_explains_access_denied(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    demo_bucket.add_fault(
        service="s3", operation="ListObjectsV2", error="AccessDenied", count=1
    )
    response = client_alice.get("/browse/")
    assert (
        "The dashboard may not read s3://dicom-input/incoming/ (AccessDenied): it needs s3:ListBucket there."
        in response.content.decode()
    )


def test_viewers_cannot_browse(client_bob: Client, datastore: Datastore) -> None:
    assert client_bob.get("/browse/").status_code == 403
    assert (
        client_bob.post("/scans/start/", {"datastore": datastore.pk}).status_code == 403
    )


def test_starting_a_scan_enqueues_it_and_shows_its_page(
    client_alice: Client, datastore: Datastore, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_alice.post(
            "/scans/start/",
            {"datastore": str(datastore.pk), "uri": "s3://dicom-input/incoming/p1"},
        )
    scan = Scan.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/scans/{scan.pk}/"
    assert (scan.bucket, scan.prefix, scan.region) == (
        "dicom-input",
        "incoming/p1/",
        "us-east-1",
    )
    assert scan.started_by is not None
    assert scan.started_by.username == "alice"
    assert len(callbacks) == 1
    page = client_alice.get(f"/scans/{scan.pk}/").content.decode()
    assert f'hx-get="/scans/{scan.pk}/progress/" hx-trigger="every 1s"' in page


def test_the_progress_fragment_polls_while_running_and_stops_with_286(
    client_bob: Client, datastore: Datastore
) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    # The percentage is shown against the whole prefix, so once the listing has ended.
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING,
        objects_listed=10,
        objects_done=4,
        listing_finished_at=timezone.now(),
    )
    running = client_bob.get(
        f"/scans/{scan.pk}/progress/", headers={"HX-Request": "true"}
    )
    assert running.status_code == 200
    assert 'hx-trigger="every 1s"' in running.content.decode()
    assert (
        '<progress max="10" value="4" aria-label="Objects read">40%</progress>'
        in running.content.decode()
    )
    Scan.objects.filter(pk=scan.pk).update(status=Scan.Status.COMPLETED)
    done = client_bob.get(f"/scans/{scan.pk}/progress/", headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert done["HX-Refresh"] == "true"
    assert "hx-trigger" not in done.content.decode()


def test_cancel_stops_a_scan(client_alice: Client) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(status=Scan.Status.RUNNING)
    response = client_alice.post(f"/scans/{scan.pk}/cancel/")
    assert response.status_code == 302
    scan.refresh_from_db()
    assert scan.cancel_requested
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.SCAN_CANCELLED, actor_username="alice"
    ).exists()


def completed_scan(bucket: LocalAWSHandle) -> Scan:
    scan, _ = control.scan_start(
        actor=None,
        bucket="dicom-input",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
    )
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    assert result.status == Scan.Status.COMPLETED
    return result


def test_the_scan_page_shows_the_tree_masked_and_the_problems(
    client_bob: Client, demo_bucket: LocalAWSHandle
) -> None:
    scan = completed_scan(demo_bucket)
    content = client_bob.get(f"/scans/{scan.pk}/").content.decode()
    assert "D*** J***" in content
    assert "DOE, JOHN" not in content
    assert "Reveal patient names" not in content  # viewers may not
    rows = table_rows(content)
    # Exact cells: "valid" alone would also match "invalid".
    assert rows["incoming/readme"][1] == "Not DICOM"
    assert rows["incoming/meta.json"][1] == "valid"
    assert STUDY in content


def test_revealing_patient_details_is_audited(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    scan = completed_scan(demo_bucket)
    assert (
        "Reveal patient names and IDs"
        in client_alice.get(f"/scans/{scan.pk}/").content.decode()
    )
    response = client_alice.post(f"/scans/{scan.pk}/reveal/")
    assert response.status_code == 302
    content = client_alice.get(f"/scans/{scan.pk}/").content.decode()
    assert "DOE, JOHN" in content
    event = AuditEvent.objects.get(action=AuditEvent.Action.PHI_REVEALED)
    assert (event.actor_username, event.target_id) == ("alice", str(scan.pk))
    assert "DOE" not in event.summary
    client_alice.post(f"/scans/{scan.pk}/reveal/", {"hide": "1"})
    assert "DOE, JOHN" not in client_alice.get(f"/scans/{scan.pk}/").content.decode()


def test_viewers_cannot_reveal(client_bob: Client, demo_bucket: LocalAWSHandle) -> None:
    scan = completed_scan(demo_bucket)
    assert client_bob.post(f"/scans/{scan.pk}/reveal/").status_code == 403
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.PHI_REVEALED).exists()


def test_the_scan_page_runs_a_bounded_number_of_queries(
    client_bob: Client, localaws: LocalAWSHandle, django_assert_max_num_queries: Any
) -> None:
    localaws.create_bucket("dicom-input")
    for study in range(30):
        for series in range(3):
            localaws.put(
                f"s3://dicom-input/incoming/{study}/{series}.dcm",
                dicom_bytes(
                    study=f"{STUDY}.{study}", series=f"{STUDY}.{study}.{series}"
                ),
            )
    scan = completed_scan(localaws)
    assert scan.studies.count() == 30
    with django_assert_max_num_queries(14):
        response = client_bob.get(f"/scans/{scan.pk}/")
    assert response.content.decode().count('class="series-row') == 25 * 3


def test_the_scan_list_filters_by_status(
    client_bob: Client, django_assert_max_num_queries: Any
) -> None:
    for i in range(30):
        control.scan_start(
            actor=None, bucket="b", prefix=f"p{i}/", region="us-east-1", enqueue=False
        )
    Scan.objects.filter(prefix="p3/").update(status=Scan.Status.FAILED)
    with django_assert_max_num_queries(8):
        content = client_bob.get("/scans/").content.decode()
    assert "Page 1 of 2" in content
    filtered = client_bob.get("/scans/", {"status": "failed"}).content.decode()
    assert list(table_rows(filtered)) == ["s3://b/p3/"]


def test_the_scan_exports_every_object_as_csv_without_patient_data(
    client_bob: Client, demo_bucket: LocalAWSHandle
) -> None:
    scan = completed_scan(demo_bucket)
    response = client_bob.get(f"/scans/{scan.pk}/objects.csv")
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    lines = body.strip().splitlines()
    assert lines[0].startswith("key,kind,status,study_instance_uid,series_instance_uid")
    assert len(lines) == 1 + 5
    assert "DOE" not in body


def test_the_uri_field_shows_the_folder_being_browsed(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    content = client_alice.get("/browse/").content.decode()
    assert 'value="s3://dicom-input/incoming/"' in content


def test_the_scan_list_pages_keep_the_filters(client_bob: Client) -> None:
    for i in range(30):
        control.scan_start(
            actor=None, bucket="b", prefix=f"p{i}/", region="us-east-1", enqueue=False
        )
    content = client_bob.get("/scans/", {"status": "queued", "q": "p"}).content.decode()
    assert 'href="?status=queued&amp;q=p&amp;page=2"' in content


def test_starting_a_scan_of_a_malformed_uri_explains_and_saves_nothing(
    client_alice: Client,
) -> None:
    response = client_alice.post("/scans/start/", {"uri": "s3://UPPER/case/"})
    assert response.status_code == 400
    assert "is not an S3 URI HealthImaging accepts" in response.content.decode()
    assert not Scan.objects.exists()


def test_browsing_a_folder_again_sniffs_nothing_again(
    client_alice: Client, demo_bucket: LocalAWSHandle
) -> None:
    from django.core.cache import cache

    cache.clear()
    client_alice.get("/browse/")
    assert len(demo_bucket.calls("s3", "GetObject")) == 2  # "noext" and "readme"
    demo_bucket.clear_calls()
    content = client_alice.get("/browse/").content.decode()
    assert demo_bucket.calls("s3", "GetObject") == []
    assert "dicom" in content.split("noext")[1].split("</tr>")[0]


def test_an_unknown_scan_status_lists_nothing_and_says_why(client_bob: Client) -> None:
    control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    content = client_bob.get("/scans/", {"status": "bogus"}).content.decode()
    assert (
        '<p class="error field-error" id="id_status_error">“bogus” is not a scan status; choose one from the list.</p>'
        in content
    )
    assert table_rows(content) == {}


def test_the_address_bar_names_the_folder_shown_after_an_htmx_request(
    client_alice: Client, demo_bucket: LocalAWSHandle, datastore: Datastore
) -> None:
    # A typed URI without its trailing slash, as a person types it.
    response = client_alice.get(
        "/browse/",
        {"datastore": str(datastore.pk), "uri": "s3://dicom-input/incoming/p1"},
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    assert response["HX-Push-Url"] == (
        f"/browse/?datastore={datastore.pk}&uri=s3%3A%2F%2Fdicom-input%2Fincoming%2Fp1%2F"
    )
    assert 'value="s3://dicom-input/incoming/p1/"' in content
    assert 'aria-current="location">p1</a>' in content


def test_choosing_a_datastore_opens_it(
    client_alice: Client, demo_bucket: LocalAWSHandle, datastore: Datastore
) -> None:
    content = client_alice.get("/browse/").content.decode()
    # htmx sends the select alone on change (a GET does not include the enclosing form).
    assert '<select name="datastore" hx-get="/browse/" id="id_datastore">' in content
    response = client_alice.get(
        "/browse/", {"datastore": datastore.pk}, headers={"HX-Request": "true"}
    )
    assert 'value="s3://dicom-input/incoming/"' in response.content.decode()


def test_without_javascript_the_datastore_button_opens_the_datastore_not_the_typed_uri(
    client_alice: Client, demo_bucket: LocalAWSHandle, datastore: Datastore
) -> None:
    content = client_alice.get("/browse/").content.decode()
    assert (
        '<noscript><button type="submit" class="button" name="open" value="datastore">Open datastore</button></noscript>'
        in content
    )
    response = client_alice.get(
        "/browse/",
        {
            "datastore": str(datastore.pk),
            "uri": "s3://dicom-input/incoming/p1/",
            "open": "datastore",
        },
    )
    assert 'value="s3://dicom-input/incoming/"' in response.content.decode()
