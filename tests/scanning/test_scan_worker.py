"""A scan started from the page runs in a real Celery worker process, and can be cancelled there."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from imports.models import Datastore, ObjectHeader, Scan, ScanObject, ScanUnread
from imports.scanning import control, run
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.conftest import WorkerProcess, wait_for

# Transactional: the worker process must see the rows this test commits.
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STUDY = "1.2.826.0.1.3680043.8.498.9"


def test_a_scan_started_from_the_browse_page_completes_in_the_worker(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
) -> None:
    localaws.create_bucket("dicom-input")
    for i in range(20):
        localaws.put(
            f"s3://dicom-input/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )
    response = client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
    scan = Scan.objects.get()
    assert response["Location"] == f"/scans/{scan.pk}/"

    def ended() -> bool:
        scan.refresh_from_db()
        return not scan.is_active

    wait_for(
        ended,
        timeout=60,
        what=f"the worker to finish the scan; its log:\n{celery_worker_process.output()[-3000:]}",
    )
    assert scan.status == Scan.Status.COMPLETED
    assert scan.objects_done == 20
    assert scan.studies.get().instance_count == 20
    assert len(localaws.calls("s3", "GetObject")) == 20


def test_a_running_scan_can_be_cancelled(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
    settings: Any,
) -> None:
    localaws.create_bucket("dicom-input")
    s3 = localaws.s3_client()
    body = dicom_bytes(study=STUDY, series=STUDY + ".1")
    for i in range(300):
        s3.put_object(Bucket="dicom-input", Key=f"incoming/{i:04}.dcm", Body=body)
    # Slow S3 down (300 objects / 16 threads × 250 ms ≈ 5 s) so the scan is still running when the cancel arrives.
    localaws.add_fault(service="s3", latency_ms=250)
    client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
    scan = Scan.objects.get()

    def reading() -> bool:
        scan.refresh_from_db()
        return scan.status == Scan.Status.RUNNING and scan.objects_done > 0

    wait_for(reading, timeout=60, what="the scan to start reading")
    client_alice.post(f"/scans/{scan.pk}/cancel/")

    def ended() -> bool:
        scan.refresh_from_db()
        return not scan.is_active

    wait_for(ended, timeout=60, what="the scan to stop")
    assert scan.status == Scan.Status.CANCELLED
    assert scan.objects_done < 300
    assert not scan.studies.exists()


# --- S3 trouble, with the scan in the worker ----------------------------------------------------


def _put_objects(localaws: LocalAWSHandle, count: int) -> None:
    localaws.create_bucket("dicom-input")
    s3 = localaws.s3_client()
    for i in range(count):
        s3.put_object(
            Bucket="dicom-input",
            Key=f"incoming/{i:03}.dcm",
            Body=dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )


def _wait_until(scan: Scan, predicate: Any, worker: WorkerProcess, what: str) -> None:
    def check() -> bool:
        scan.refresh_from_db()
        return bool(predicate(scan))

    wait_for(
        check,
        timeout=120,
        what=f"{what}; the worker's log:\n{worker.output()[-3000:]}",
    )


def _assert_every_object_read(scan: Scan, count: int) -> None:
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED
    headers = ObjectHeader.objects.of_scan(scan)
    assert headers.filter(status=ObjectHeader.Status.OK).count() == count
    assert scan.studies.get().instance_count == count
    # The counters say what the rows say.
    assert (scan.objects_listed, scan.objects_done, scan.objects_pending) == (
        count,
        ScanObject.objects.filter(scan=scan).count(),
        ScanUnread.objects.filter(scan=scan).count(),
    )
    assert (scan.objects_done, scan.objects_pending, scan.objects_unreadable) == (
        count,
        0,
        0,
    )
    assert scan.paused_since is None


def test_a_slowdown_storm_mid_scan_ends_completed_with_every_object_read(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
) -> None:
    _put_objects(localaws, 40)
    localaws.add_fault(service="s3", latency_ms=50)
    # Ten reads go through, then 60% of GETs are throttled until the storm is lifted below.
    localaws.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=0.6, after=10
    )
    client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
    scan = Scan.objects.get()

    def throttled() -> int:
        calls = localaws.calls("s3", "GetObject")
        return len([c for c in calls if c.get("error") == "SlowDown"])

    # The storm lasts until it has throttled forty reads, or to the end of the scan if sooner.
    wait_for(
        lambda: (
            throttled() >= 40
            or not Scan.objects.filter(status__in=Scan.ACTIVE).exists()
        ),
        timeout=120,
        what="the storm to throttle forty reads",
    )
    localaws.clear_faults()
    _wait_until(
        scan, lambda s: not s.is_active, celery_worker_process, "the scan to end"
    )
    # It was a storm: each of those reads failed, and was read again later in the same scan.
    assert throttled() >= 20
    _assert_every_object_read(scan, 40)


def test_s3_stopped_while_listing_and_while_reading_ends_completed_once_it_is_back(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
) -> None:
    _put_objects(localaws, 60)
    # Slow reads, so that the second outage finds most objects still unread.
    localaws.add_fault(service="s3", latency_ms=300)
    server = localaws.server
    server.stop()
    try:
        client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
        scan = Scan.objects.get()
        _wait_until(
            scan,
            lambda s: s.paused_since is not None,
            celery_worker_process,
            "the scan to pause while S3 is down before the listing",
        )
        assert (scan.status, scan.objects_listed) == (Scan.Status.RUNNING, 0)
        assert scan.listing_finished_at is None
        server.start()
        wait_for(
            lambda: len(localaws.calls("s3", "GetObject")) >= 10,
            timeout=120,
            what="the first reads",
        )
        server.stop()
        _wait_until(
            scan,
            lambda s: s.paused_since is not None,
            celery_worker_process,
            "the scan to pause while S3 is down mid-reading",
        )
        assert scan.status == Scan.Status.RUNNING
        assert scan.listing_finished_at is not None
        assert scan.objects_done < 60
    finally:
        if server._server is None:
            server.start()
    _wait_until(
        scan, lambda s: not s.is_active, celery_worker_process, "the scan to end"
    )
    _assert_every_object_read(scan, 60)


def test_read_the_rest_in_the_worker_completes_an_incomplete_scan(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
    settings: Any,
) -> None:
    _put_objects(localaws, 30)
    # The storm outlasts the patience (short in this process, where this first run happens).
    settings.SCAN_PATIENCE_S = 1.0
    settings.AWS_MAX_ATTEMPTS = 1
    localaws.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=1.0, after=12
    )
    scan, _ = control.scan_start(
        actor=None,
        bucket="dicom-input",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
    )
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    assert (result.status, result.objects_done, result.objects_pending) == (
        Scan.Status.INCOMPLETE,
        12,
        18,
    )
    assert "18 objects could not be read because S3 did not answer" in result.error
    page = client_alice.get(f"/scans/{scan.pk}/").content.decode()
    assert "Read the rest" in page
    localaws.clear_faults()
    localaws.clear_calls()
    client_alice.post(f"/scans/{scan.pk}/read-rest/")
    _wait_until(
        scan, lambda s: not s.is_active, celery_worker_process, "the rest to be read"
    )
    _assert_every_object_read(scan, 30)
    assert len(localaws.calls("s3", "GetObject")) == 18


def test_a_scan_started_with_the_broker_down_waits_for_a_worker_and_runs_once_it_is_back(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    client_alice: Client,
    datastore: Datastore,
) -> None:
    from datetime import timedelta

    from django.utils import timezone
    from kombu.exceptions import OperationalError

    from config.celery import app as celery_app
    from imports import tasks

    localaws.create_bucket("dicom-input")
    localaws.put(
        "s3://dicom-input/incoming/0.dcm", dicom_bytes(study=STUDY, series=STUDY + ".1")
    )

    def refuse(name: str, args: tuple[int]) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(celery_app, "send_task", refuse)
        response = client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
        scan = Scan.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/scans/{scan.pk}/"
        page = client_alice.get(response["Location"]).content.decode()
        assert "Waiting for a worker" in page
        # A second press joins the queued scan; it does not make another.
        client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
        assert Scan.objects.count() == 1
    assert scan.status == Scan.Status.QUEUED

    # A minute later, with the broker back, beat's recovery sends the scan again.
    Scan.objects.filter(pk=scan.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    tasks.scans_recover_stalled.delay()

    def ended() -> bool:
        scan.refresh_from_db()
        return not scan.is_active

    wait_for(
        ended,
        timeout=60,
        what=f"the requeued scan to finish; worker log:\n{celery_worker_process.output()[-3000:]}",
    )
    assert scan.status == Scan.Status.COMPLETED
    assert scan.objects_done == 1


def test_the_scan_command_with_queue_runs_on_the_workers_and_prints_the_same_summary(
    celery_worker_process: WorkerProcess, localaws: LocalAWSHandle, db: None
) -> None:
    localaws.create_bucket("dicom-input")
    for i in range(12):
        localaws.put(
            f"s3://dicom-input/queued/{i}.dcm",
            dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "scan", "s3://dicom-input/queued/", "--queue", "--interval", "0.2",
        stdout=out, stderr=err,
    )  # fmt: skip
    scan = Scan.objects.get()
    assert scan.status == Scan.Status.COMPLETED
    assert scan.origin == Scan.Origin.CLI
    # Read by the worker process, not this one: its log names the scan task.
    assert "imports.scan_prefix" in celery_worker_process.output()
    summary = out.getvalue()
    assert summary.startswith("Scan of s3://dicom-input/queued/: Completed")
    assert "12" in summary
    assert (
        f"Scan {scan.pk} of s3://dicom-input/queued/ is queued on the workers"
        in err.getvalue()
    )
    # --json prints one line an object, as without --queue.
    lines = io.StringIO()
    call_command(
        "scan", "s3://dicom-input/queued/", "--queue", "--json", "--interval", "0.2",
        stdout=lines, stderr=io.StringIO(),
    )  # fmt: skip
    objects = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(objects) == 12
    assert {o["status"] for o in objects} == {"ok"}
