"""One scan fanned out over a real worker's two processes (--concurrency 2): chunks, cancel, a killed process."""

from __future__ import annotations

import io
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]  # no stubs; a dependency of locust (requirements-dev)
import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone

from imports import tasks
from imports.models import ObjectHeader, Scan, ScanChunk, ScanObject, ScanUnread
from imports.scanning import control
from localaws.server import LocalAWS
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.conftest import (
    WorkerProcess,
    session_worker_paused,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STUDY = "1.2.826.0.1.3680043.8.498.20"
# 20 objects a chunk, read 2 at a time: with 100 ms a read a chunk takes about a second, long enough for
# both processes to take chunks and for a test to kill one mid-chunk. A lease not renewed for 3 s is lost.
CHUNK = 20
WORKER_ENVIRONMENT = {
    "SCAN_CHUNK_OBJECTS": str(CHUNK),
    "SCAN_THREADS": "2",
    "SCAN_CHUNK_LEASE_S": "3",
}


@pytest.fixture(scope="module")
def prefork_worker(
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    localaws_server: LocalAWS,
) -> Iterator[WorkerProcess]:
    # Only this worker takes the app's queues while it runs (tests/conftest.py says why).
    with session_worker_paused():
        worker = start_celery_worker(
            django_db_blocker,
            tmp_path_factory,
            localaws_server,
            pool=("-P", "prefork", "--concurrency", "2"),
            environment=WORKER_ENVIRONMENT,
        )
        yield worker
        stop_celery_worker(worker)


def _put_objects(localaws: LocalAWSHandle, count: int) -> None:
    localaws.create_bucket("dicom-input")
    s3 = localaws.s3_client()
    for i in range(count):
        s3.put_object(
            Bucket="dicom-input",
            Key=f"incoming/{i:04}.dcm",
            Body=dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )


def _start() -> Scan:
    scan, created = control.scan_start(
        actor=None, bucket="dicom-input", prefix="incoming/", region="us-east-1"
    )
    assert created
    return scan


def _wait_until_ended(scan: Scan, worker: WorkerProcess) -> None:
    def ended() -> bool:
        scan.refresh_from_db()
        return not scan.is_active

    wait_for(
        ended,
        timeout=120,
        what=f"the scan to end; the worker's log:\n{worker.output()[-3000:]}",
    )


def _assert_every_object_once(scan: Scan, count: int) -> None:
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED, scan.error
    keys = Counter(ObjectHeader.objects.of_scan(scan).values_list("key", flat=True))
    assert len(keys) == count
    assert set(keys.values()) == {1}
    assert scan.studies.get().instance_count == count
    # The counters say what the rows say, and every chunk has ended and been counted.
    assert (scan.objects_listed, scan.objects_done, scan.objects_pending) == (
        count,
        ScanObject.objects.filter(scan=scan).count(),
        ScanUnread.objects.filter(scan=scan).count(),
    )
    assert (scan.objects_done, scan.objects_pending) == (count, 0)
    chunks = ScanChunk.objects.filter(scan=scan)
    assert (
        scan.chunks_total == scan.chunks_ended == chunks.count() == -(-count // CHUNK)
    )
    assert set(chunks.values_list("state", flat=True)) == {ScanChunk.State.DONE}
    assert sum(chunks.values_list("objects_done", flat=True)) == count


def test_one_scan_runs_as_chunk_tasks_in_two_processes_and_a_rescan_reads_nothing(
    prefork_worker: WorkerProcess, localaws: LocalAWSHandle
) -> None:
    _put_objects(localaws, 120)
    localaws.add_fault(service="s3", operation="GetObject", latency_ms=100)
    scan = _start()
    _wait_until_ended(scan, prefork_worker)
    _assert_every_object_once(scan, 120)
    pids = set(ScanChunk.objects.filter(scan=scan).values_list("lease_pid", flat=True))
    assert len(pids) >= 2, pids
    assert os.getpid() not in pids
    assert len(localaws.calls("s3", "GetObject")) == 120

    # Unchanged, the prefix is scanned again from the cache alone.
    localaws.clear_calls()
    again = _start()
    _wait_until_ended(again, prefork_worker)
    _assert_every_object_once(again, 120)
    assert again.objects_cached == 120
    assert localaws.calls("s3", "GetObject") == []


def test_a_cancel_stops_every_chunk(
    prefork_worker: WorkerProcess, localaws: LocalAWSHandle
) -> None:
    _put_objects(localaws, 200)
    localaws.add_fault(service="s3", operation="GetObject", latency_ms=100)
    scan = _start()

    def reading() -> bool:
        scan.refresh_from_db()
        return scan.objects_done > 0

    wait_for(reading, timeout=60, what="the chunks to start reading")
    assert control.scan_cancel(scan=scan, actor=None)
    _wait_until_ended(scan, prefork_worker)
    assert scan.status == Scan.Status.CANCELLED
    assert scan.objects_done < 200
    assert not scan.studies.exists()
    chunks = ScanChunk.objects.filter(scan=scan)
    # No chunk goes on reading once the scan has ended: each one ended and was counted.
    assert not chunks.exclude(state__in=ScanChunk.ENDED).exists()
    assert scan.chunks_ended == scan.chunks_total == chunks.count()
    assert chunks.filter(state=ScanChunk.State.STOPPED).exists()
    assert scan.objects_done == ScanObject.objects.filter(scan=scan).count()


def test_a_worker_process_killed_mid_chunk_has_its_chunk_requeued_and_every_object_read_once(
    prefork_worker: WorkerProcess, localaws: LocalAWSHandle
) -> None:
    _put_objects(localaws, 120)
    localaws.add_fault(service="s3", operation="GetObject", latency_ms=100)
    scan = _start()
    children = {p.pid for p in psutil.Process(prefork_worker.process.pid).children()}

    def mid_chunk() -> ScanChunk | None:
        return (
            ScanChunk.objects.filter(
                scan=scan,
                state=ScanChunk.State.RUNNING,
                objects_done__gt=0,
                objects_done__lt=CHUNK,
                lease_pid__in=children,
            )
            .order_by("sequence")
            .first()
        )

    wait_for(mid_chunk, timeout=60, what="a chunk half read")
    victim = mid_chunk()
    assert victim is not None
    assert victim.lease_pid is not None
    os.kill(victim.lease_pid, signal.SIGKILL)

    def lease_ran_out() -> bool:
        victim.refresh_from_db()
        lease = victim.lease_expires_at
        return victim.state != ScanChunk.State.RUNNING or (
            lease is not None and lease < timezone.now()
        )

    wait_for(lease_ran_out, timeout=60, what="the killed process's lease to run out")
    # Beat's recovery (run here at once instead of within the minute).
    tasks.scans_recover_stalled.delay()
    _wait_until_ended(scan, prefork_worker)
    _assert_every_object_once(scan, 120)
    victim.refresh_from_db()
    assert victim.attempts == 2
    assert victim.pids[0] != victim.pids[1]
    # What the killed process had written came from the cache the second time: at most the rest of its
    # chunk was read twice.
    assert 120 <= len(localaws.calls("s3", "GetObject")) < 120 + CHUNK


def test_the_scan_command_with_queue_prints_what_the_command_prints_without_it(
    prefork_worker: WorkerProcess, localaws: LocalAWSHandle
) -> None:
    _put_objects(localaws, 45)

    def scan_command(*options: str) -> str:
        out = io.StringIO()
        call_command(
            "scan", "s3://dicom-input/incoming/", *options, "--interval", "0.1",
            stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
        return out.getvalue()

    first = scan_command("--queue")
    assert first.startswith("Scan of s3://dicom-input/incoming/: Completed")
    assert "45 (0 from the cache)" in first
    queued_scan = Scan.objects.get()
    assert queued_scan.chunks_total == 3
    # Rescans of an unchanged prefix, in this process and on the workers, say the same.
    here = scan_command()
    there = scan_command("--queue")
    assert "45 (45 from the cache)" in here
    assert there == here
    lines_here = [json.loads(line) for line in scan_command("--json").splitlines()]
    lines_there = [
        json.loads(line) for line in scan_command("--queue", "--json").splitlines()
    ]
    assert len(lines_there) == 45
    assert lines_there == lines_here
    assert Scan.objects.values("origin").annotate(n=Count("pk")).get()["n"] == 5


def test_a_slowdown_storm_across_both_processes_is_backed_off_and_every_object_read(
    prefork_worker: WorkerProcess, localaws: LocalAWSHandle
) -> None:
    _put_objects(localaws, 120)
    localaws.add_fault(service="s3", operation="GetObject", latency_ms=50)
    # Ten reads go through, then 60% of GETs are throttled until the storm is lifted below.
    localaws.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=0.6, after=10
    )
    scan = _start()

    def throttled() -> int:
        calls = localaws.calls("s3", "GetObject")
        return len([c for c in calls if c.get("error") == "SlowDown"])

    wait_for(
        lambda: throttled() >= 40 or not Scan.objects.filter(pk=scan.pk, status__in=Scan.ACTIVE).exists(),
        timeout=120,
        what="the storm to throttle forty reads",
    )  # fmt: skip
    localaws.clear_faults()
    _wait_until_ended(scan, prefork_worker)
    assert throttled() >= 20
    # Throttled reads were read again later, none recorded as the object's result.
    _assert_every_object_once(scan, 120)
    assert scan.objects_unreadable == 0
    # The scan's read limit was cut (and ramped back after the storm).
    assert scan.read_limit_cut_at is not None
    pids = set(ScanChunk.objects.filter(scan=scan).values_list("lease_pid", flat=True))
    assert len(pids) >= 2, pids
