"""A scan started from the page runs in a real Celery worker process, and can be cancelled there."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from imports.models import Datastore, Scan
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
