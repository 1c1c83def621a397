"""A scan under S3 trouble: transient failures are retried, never recorded; endings are honest.

These run the scan in the test process against localaws over HTTP, with faults injected at the
server; the outages with a real worker are in test_scan_worker.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from imports.models import ObjectHeader, Scan, ScanObject, ScanUnread
from imports.scanning import control, reader, run
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.12"
SERIES = STUDY + ".1"
URI = "s3://scan-in/incoming/"


def run_scan() -> Scan:
    scan, created = control.scan_start(
        actor=None,
        bucket="scan-in",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
    )
    assert created
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    return result


def assert_counters_match_rows(scan: Scan) -> None:
    """The progress counters say what the rows say."""
    scan.refresh_from_db()
    headers = ObjectHeader.objects.of_scan(scan)
    assert scan.objects_done == ScanObject.objects.filter(scan=scan).count()
    assert (
        scan.objects_unreadable
        == headers.filter(status=ObjectHeader.Status.UNREADABLE).count()
    )
    assert scan.objects_pending == ScanUnread.objects.filter(scan=scan).count()
    if not scan.is_active:
        assert scan.objects_listed == scan.objects_done + scan.objects_pending


def rows_of(scan: Scan) -> list[tuple[Any, ...]]:
    """What a scan recorded, field by field, to compare before and after later scans."""
    return sorted(
        ObjectHeader.objects.of_scan(scan).values_list(
            "pk", "key", "etag", "status", "error", "study_instance_uid", "read_at"
        )
    ) + sorted(ScanUnread.objects.filter(scan=scan).values_list("key", "error"))


@pytest.fixture
def bucket(localaws: LocalAWSHandle, settings: Any) -> LocalAWSHandle:
    # One attempt per request: the scan's own retries are under test, not botocore's.
    settings.AWS_MAX_ATTEMPTS = 1
    localaws.create_bucket("scan-in")
    s3 = localaws.s3_client()
    for i in range(30):
        s3.put_object(
            Bucket="scan-in",
            Key=f"incoming/{i:02}.dcm",
            Body=dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i),
        )
    return localaws


def test_a_throttled_read_is_read_again_and_never_recorded(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.add_fault(service="s3", operation="GetObject", error="SlowDown", count=3)
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    assert len([c for c in bucket.calls("s3", "GetObject") if c.get("error")]) == 3
    headers = ObjectHeader.objects.of_scan(scan)
    assert headers.filter(status=ObjectHeader.Status.OK).count() == 30
    assert not ObjectHeader.objects.exclude(error="").exists()
    assert scan.studies.get().instance_count == 30
    assert_counters_match_rows(scan)


@pytest.mark.parametrize("error", ["InternalError", "ServiceUnavailable"])
def test_a_listing_page_that_fails_mid_listing_is_asked_for_again(
    db: None, bucket: LocalAWSHandle, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    monkeypatch.setattr(run, "LIST_PAGE_SIZE", 10)
    # The first page is answered, the second fails four times, then S3 is back.
    bucket.add_fault(
        service="s3", operation="ListObjectsV2", error=error, after=1, count=4
    )
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    listings = [c["status"] for c in bucket.calls("s3", "ListObjectsV2")]
    failed = 500 if error == "InternalError" else 503
    assert listings == [200, failed, failed, failed, failed, 200, 200]
    assert (scan.objects_listed, scan.objects_done) == (30, 30)
    assert scan.percent_done == 100
    assert_counters_match_rows(scan)


def test_a_storm_longer_than_the_patience_ends_incomplete_and_the_rest_completes_it(
    db: None, bucket: LocalAWSHandle, settings: Any
) -> None:
    settings.SCAN_PATIENCE_S = 1.0
    # Ten reads succeed, then S3 throttles every read until the test lifts it.
    bucket.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=1.0, after=10
    )
    scan = run_scan()
    assert scan.status == Scan.Status.INCOMPLETE
    assert (scan.objects_listed, scan.objects_done, scan.objects_pending) == (
        30,
        10,
        20,
    )
    assert scan.error == (
        "20 objects could not be read because S3 did not answer. "
        "Read the rest when S3 is back."
    )
    assert scan.paused_since is None
    assert not scan.studies.exists()
    # Nothing transient became an object's recorded result.
    assert not ObjectHeader.objects.exclude(status=ObjectHeader.Status.OK).exists()
    unread = ScanUnread.objects.filter(scan=scan)
    assert all("SlowDown" in row.error for row in unread)
    assert_counters_match_rows(scan)

    bucket.clear_faults()
    bucket.clear_calls()
    call_command("scan", URI, "--rest", stdout=_Sink())
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED
    assert (scan.objects_done, scan.objects_pending) == (30, 0)
    # Only the twenty unread objects were read, and nothing was listed again.
    assert len(bucket.calls("s3", "GetObject")) == 20
    assert bucket.calls("s3", "ListObjectsV2") == []
    assert scan.studies.get().instance_count == 30
    assert_counters_match_rows(scan)


def test_the_command_refuses_to_read_the_rest_when_no_scan_is_incomplete(
    db: None, bucket: LocalAWSHandle
) -> None:
    run_scan()
    with pytest.raises(
        CommandError, match="No incomplete scan of s3://scan-in/incoming/"
    ):
        call_command("scan", URI, "--rest", stdout=_Sink())


def test_a_finished_scans_rows_are_unchanged_by_a_later_rescan(
    db: None, bucket: LocalAWSHandle, settings: Any
) -> None:
    settings.SCAN_PATIENCE_S = 1.0
    # A denied read (a permanent answer, this scan's result) and a storm the scan gives up on.
    bucket.add_fault(service="s3", operation="GetObject", error="AccessDenied", count=1)
    bucket.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=1.0, after=19
    )
    first = run_scan()
    assert first.status == Scan.Status.INCOMPLETE
    assert (first.objects_done, first.objects_unreadable, first.objects_pending) == (
        20,
        1,
        10,
    )
    before = rows_of(first)
    bucket.clear_faults()
    # A file changes under the prefix before the next scan.
    bucket.put(
        "s3://scan-in/incoming/00.dcm",
        dicom_bytes(study=STUDY, series=SERIES, StudyDescription="CHANGED"),
    )
    second = run_scan()
    assert second.status == Scan.Status.COMPLETED
    assert second.objects_unreadable == 0
    assert rows_of(first) == before
    first.refresh_from_db()
    assert (first.status, first.objects_done, first.objects_pending) == (
        Scan.Status.INCOMPLETE,
        20,
        10,
    )
    assert_counters_match_rows(first)
    assert_counters_match_rows(second)


def test_a_json_file_nested_a_thousand_deep_is_recorded_as_invalid_and_the_scan_goes_on(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.put("s3://scan-in/incoming/deep.json", "[" * 1000 + "]" * 1000)
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    deep = ObjectHeader.objects.of_scan(scan).get(key="incoming/deep.json")
    assert (deep.kind, deep.status) == (
        ObjectHeader.Kind.JSON,
        ObjectHeader.Status.JSON_INVALID,
    )
    assert deep.error.startswith("nested too deeply")
    assert scan.studies.get().instance_count == 30
    assert_counters_match_rows(scan)


def test_an_unforeseen_error_on_one_object_becomes_its_reason_and_the_scan_goes_on(
    db: None, bucket: LocalAWSHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def checker_bug(data: bytes, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug in the checker")

    monkeypatch.setattr(reader, "validate_dicom_json", checker_bug)
    bucket.put("s3://scan-in/incoming/odd.json", "{}")
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    odd = ObjectHeader.objects.of_scan(scan).get(key="incoming/odd.json")
    assert odd.error == "The file could not be checked: ZeroDivisionError."
    assert scan.studies.get().instance_count == 30


# --- the page ---------------------------------------------------------------------------------


def test_the_page_says_s3_is_not_answering_since_when(
    db: None, client_alice: Client
) -> None:
    from datetime import datetime

    from django.utils import timezone

    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    # 14:02:11 on the page's clock (TIME_ZONE), whatever the machine's.
    since = datetime(2026, 3, 2, 14, 2, 11, tzinfo=timezone.get_current_timezone())
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING, paused_since=since
    )
    content = client_alice.get(f"/scans/{scan.pk}/progress/").content.decode()
    assert "S3 is not answering; retrying (since 14:02:11)" in content
    assert "listing…" in content


def test_the_page_shows_the_share_of_the_whole_prefix_once_listed(
    db: None, client_alice: Client
) -> None:
    from django.utils import timezone

    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING,
        objects_listed=3000,
        objects_done=2000,
        listing_finished_at=timezone.now(),
    )
    content = client_alice.get(f"/scans/{scan.pk}/progress/").content.decode()
    assert "66%" in content
    assert "listing…" not in content
    assert "S3 is not answering" not in content


def test_read_the_rest_queues_an_incomplete_scan_once(
    db: None, client_alice: Client, django_capture_on_commit_callbacks: Any
) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.INCOMPLETE, error="2 objects could not be read"
    )
    page = client_alice.get(f"/scans/{scan.pk}/").content.decode()
    assert "Read the rest" in page
    assert "Incomplete" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_alice.post(f"/scans/{scan.pk}/read-rest/")
    assert response.status_code == 302
    assert len(callbacks) == 1
    scan.refresh_from_db()
    assert (scan.status, scan.error) == (Scan.Status.QUEUED, "")
    # A second press finds nothing incomplete to send back.
    with django_capture_on_commit_callbacks() as callbacks:
        client_alice.post(f"/scans/{scan.pk}/read-rest/")
    assert callbacks == []


def test_a_viewer_cannot_read_the_rest(db: None, client_bob: Client) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(status=Scan.Status.INCOMPLETE)
    assert client_bob.post(f"/scans/{scan.pk}/read-rest/").status_code == 403
    assert "Read the rest" not in client_bob.get(f"/scans/{scan.pk}/").content.decode()
    scan.refresh_from_db()
    assert scan.status == Scan.Status.INCOMPLETE


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
