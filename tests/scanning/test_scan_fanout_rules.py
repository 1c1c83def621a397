"""The fan-out's rules, each chunk task run here by its service (what the broker would carry is captured).

The same rules with a real worker and two processes are in test_scan_fanout.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from imports.enqueue import SCAN_CHUNK, SCAN_PREFIX
from imports.models import Scan, ScanChunk, ScanObject, ScanUnread
from imports.scanning import control, fanout, shared
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.scanning import test_scan_inventory as inventories

pytestmark = pytest.mark.django_db(transaction=True)

STUDY = "1.2.826.0.1.3680043.8.498.21"


@pytest.fixture
def small_chunks(settings: Any) -> None:
    settings.SCAN_CHUNK_OBJECTS = 10


def _put_objects(localaws: LocalAWSHandle, count: int) -> None:
    localaws.create_bucket("fan-in")
    s3 = localaws.s3_client()
    for i in range(count):
        s3.put_object(
            Bucket="fan-in",
            Key=f"incoming/{i:03}.dcm",
            Body=dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )


def _coordinated(sent: list[tuple[str, int]]) -> Scan:
    scan, _ = control.scan_start(
        actor=None, bucket="fan-in", prefix="incoming/", region="us-east-1"
    )
    assert sent == [(SCAN_PREFIX, scan.pk)]
    sent.clear()
    fanout.scan_coordinate(scan_id=scan.pk)
    scan.refresh_from_db()
    return scan


def _chunk_ids(sent: list[tuple[str, int]]) -> list[int]:
    assert {name for name, _ in sent} <= {SCAN_CHUNK}
    return [pk for _, pk in sent]


def test_the_coordinator_writes_a_chunk_a_page_and_the_last_chunk_to_end_ends_the_scan(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 25)
    scan = _coordinated(sent_tasks)
    chunks = _chunk_ids(sent_tasks)
    assert len(chunks) == 3
    assert (scan.status, scan.chunks_total, scan.chunks_sealed) == (
        Scan.Status.RUNNING,
        3,
        True,
    )
    assert scan.objects_listed == 25
    assert scan.listing_finished_at is not None
    assert [len(c.batch) for c in ScanChunk.objects.filter(scan=scan)] == [10, 10, 5]
    assert localaws.calls("s3", "GetObject") == []
    for pk in chunks[:2]:
        fanout.scan_chunk_run(chunk_id=pk)
    scan.refresh_from_db()
    assert (scan.status, scan.chunks_ended, scan.objects_done) == (
        Scan.Status.RUNNING,
        2,
        20,
    )
    fanout.scan_chunk_run(chunk_id=chunks[2])
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED
    assert scan.objects_done == ScanObject.objects.filter(scan=scan).count() == 25
    assert scan.studies.get().instance_count == 25


def test_a_duplicate_chunk_message_reads_and_counts_nothing(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 15)
    scan = _coordinated(sent_tasks)
    first, second = _chunk_ids(sent_tasks)
    fanout.scan_chunk_run(chunk_id=first)
    reads = len(localaws.calls("s3", "GetObject"))
    assert reads == 10
    fanout.scan_chunk_run(chunk_id=first)
    scan.refresh_from_db()
    assert len(localaws.calls("s3", "GetObject")) == reads
    assert (scan.chunks_ended, scan.objects_done, scan.status) == (
        1,
        10,
        Scan.Status.RUNNING,
    )
    fanout.scan_chunk_run(chunk_id=second)
    scan.refresh_from_db()
    assert (scan.chunks_ended, scan.status) == (2, Scan.Status.COMPLETED)


def test_a_process_that_lost_the_chunk_lease_writes_nothing(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 10)
    scan = _coordinated(sent_tasks)
    (pk,) = _chunk_ids(sent_tasks)
    ScanChunk.objects.filter(pk=pk).update(
        state=ScanChunk.State.RUNNING, lease_owner="host:2"
    )
    chunk = ScanChunk.objects.select_related("scan").get(pk=pk)
    with pytest.raises(fanout.LeaseLost):
        fanout._read_chunk(chunk, "host:1", timedelta(seconds=60))
    assert not ScanObject.objects.filter(scan=scan).exists()
    scan.refresh_from_db()
    assert scan.objects_done == 0
    # The holder of the lease writes.
    assert fanout._read_chunk(chunk, "host:2", timedelta(seconds=60)) == (
        ScanChunk.State.DONE
    )
    assert ScanObject.objects.filter(scan=scan).count() == 10


def test_a_coordinator_that_died_mid_listing_resumes_after_its_last_chunk(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 35)
    scan = _coordinated(sent_tasks)
    batches = list(ScanChunk.objects.filter(scan=scan).values_list("batch", flat=True))
    assert len(batches) == 4
    # As a coordinator killed after writing two chunks leaves it, once beat has requeued it.
    ScanChunk.objects.filter(scan=scan, sequence__gte=2).delete()
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.QUEUED,
        chunks_total=2,
        chunks_sealed=False,
        listing_finished_at=None,
        objects_listed=20,
    )
    localaws.clear_calls()
    sent_tasks.clear()
    fanout.scan_coordinate(scan_id=scan.pk)
    scan.refresh_from_db()
    # Two more pages, listed from the second chunk's token: no object listed twice.
    assert len(localaws.calls("s3", "ListObjectsV2")) == 2
    assert len(sent_tasks) == 2
    assert (
        list(ScanChunk.objects.filter(scan=scan).values_list("batch", flat=True))
        == batches
    )
    assert (scan.chunks_total, scan.objects_listed, scan.chunks_sealed) == (4, 35, True)


def test_a_cancel_stops_the_chunks_still_queued_and_the_last_ends_the_scan_cancelled(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 30)
    scan = _coordinated(sent_tasks)
    chunks = _chunk_ids(sent_tasks)
    fanout.scan_chunk_run(chunk_id=chunks[0])
    assert control.scan_cancel(scan=scan, actor=None)
    for pk in chunks[1:]:
        fanout.scan_chunk_run(chunk_id=pk)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.CANCELLED
    assert len(localaws.calls("s3", "GetObject")) == 10
    assert list(
        ScanChunk.objects.filter(scan=scan).values_list("state", flat=True)
    ) == ["done", "stopped", "stopped"]
    assert not scan.studies.exists()


def test_beat_requeues_a_chunk_whose_lease_ran_out_and_leaves_a_live_one(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    _put_objects(localaws, 20)
    scan = _coordinated(sent_tasks)
    lost, live = _chunk_ids(sent_tasks)
    now = timezone.now()
    ScanChunk.objects.filter(pk=lost).update(
        state=ScanChunk.State.RUNNING,
        lease_owner="gone:1",
        lease_expires_at=now - timedelta(seconds=1),
    )
    ScanChunk.objects.filter(pk=live).update(
        state=ScanChunk.State.RUNNING,
        lease_owner="here:2",
        lease_expires_at=now + timedelta(seconds=60),
    )
    # The scan's own heartbeat is old, but it has a live chunk: not a stalled scan.
    Scan.objects.filter(pk=scan.pk).update(heartbeat_at=now - timedelta(hours=1))
    sent_tasks.clear()
    assert control.scans_recover_stalled() == []
    assert sent_tasks == [(SCAN_CHUNK, lost)]
    assert ScanChunk.objects.get(pk=lost).state == ScanChunk.State.QUEUED
    assert ScanChunk.objects.get(pk=live).state == ScanChunk.State.RUNNING
    scan.refresh_from_db()
    assert scan.status == Scan.Status.RUNNING
    # The requeued chunk is read by the next message; the redelivery of the dead one's is a twin.
    fanout.scan_chunk_run(chunk_id=lost)
    assert ScanChunk.objects.get(pk=lost).state == ScanChunk.State.DONE


def test_read_the_rest_on_the_workers_chunks_the_unread_rows(
    localaws: LocalAWSHandle,
    sent_tasks: list[tuple[str, int]],
    small_chunks: None,
    settings: Any,
) -> None:
    _put_objects(localaws, 12)
    scan = _coordinated(sent_tasks)
    chunks = _chunk_ids(sent_tasks)
    # The storm outlasts the patience after the first chunk: its two objects stay unread.
    settings.SCAN_PATIENCE_S = 1.0
    localaws.add_fault(
        service="s3", operation="GetObject", error="SlowDown", rate=1.0, after=10
    )
    for pk in chunks:
        fanout.scan_chunk_run(chunk_id=pk)
    scan.refresh_from_db()
    assert (scan.status, scan.objects_done, scan.objects_pending) == (
        Scan.Status.INCOMPLETE,
        10,
        2,
    )
    assert "2 objects could not be read" in scan.error
    localaws.clear_faults()
    assert control.scan_read_rest(scan=scan, actor=None)
    assert not ScanChunk.objects.filter(scan=scan).exists()
    sent_tasks.clear()
    localaws.clear_calls()
    fanout.scan_coordinate(scan_id=scan.pk)
    (rest,) = _chunk_ids(sent_tasks)
    assert ScanChunk.objects.get(pk=rest).rest
    assert localaws.calls("s3", "ListObjectsV2") == []
    fanout.scan_chunk_run(chunk_id=rest)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED
    assert (scan.objects_done, scan.objects_pending) == (12, 0)
    assert not ScanUnread.objects.filter(scan=scan).exists()
    assert len(localaws.calls("s3", "GetObject")) == 2


def _inventory_archive(localaws: LocalAWSHandle) -> None:
    localaws.create_bucket("scan-in")
    localaws.create_bucket("inventories")
    for i in range(5):
        localaws.put(
            f"s3://scan-in/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i + 1),
        )
    inventories.put_inventory(localaws)


def _start_from_inventory(sent: list[tuple[str, int]]) -> Scan:
    scan, _ = control.scan_start(
        actor=None,
        bucket="scan-in",
        prefix="incoming/",
        region="us-east-1",
        inventory_uri=inventories.MANIFEST,
    )
    sent.clear()
    return scan


def test_an_inventory_scan_fans_out_without_listing_and_resumes_past_what_it_chunked(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], settings: Any
) -> None:
    settings.SCAN_CHUNK_OBJECTS = 2
    _inventory_archive(localaws)
    localaws.clear_calls()
    scan = _start_from_inventory(sent_tasks)
    fanout.scan_coordinate(scan_id=scan.pk)
    assert localaws.calls("s3", "ListObjectsV2") == []
    batches = list(ScanChunk.objects.filter(scan=scan).values_list("batch", flat=True))
    assert [len(b) for b in batches] == [2, 2, 1]
    # As a coordinator killed after its first chunk leaves it.
    ScanChunk.objects.filter(scan=scan, sequence__gte=1).delete()
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.QUEUED, chunks_total=1, chunks_sealed=False
    )
    sent_tasks.clear()
    fanout.scan_coordinate(scan_id=scan.pk)
    assert (
        list(ScanChunk.objects.filter(scan=scan).values_list("batch", flat=True))
        == batches
    )
    for pk in [*ScanChunk.objects.filter(scan=scan).values_list("pk", flat=True)]:
        fanout.scan_chunk_run(chunk_id=pk)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.COMPLETED, scan.error
    assert scan.objects_listed == scan.objects_done == 5
    assert scan.inventory_created_at == inventories.MADE


def test_an_inventory_the_coordinator_refuses_fails_the_scan_with_its_message(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]]
) -> None:
    _inventory_archive(localaws)
    inventories.put_inventory(localaws, files={"data/plain.csv.gz": b"not gzip"})
    scan = _start_from_inventory(sent_tasks)
    fanout.scan_coordinate(scan_id=scan.pk)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.FAILED
    assert "data/plain.csv.gz" in scan.error
    assert sent_tasks == []


# --- shared through the database: the ramp, the read cap, the breaker ------------------------------------------


def _running_chunks(
    localaws: LocalAWSHandle, sent: list[tuple[str, int]], count: int
) -> tuple[Scan, list[ScanChunk]]:
    _put_objects(localaws, 10 * count)
    scan = _coordinated(sent)
    ScanChunk.objects.filter(scan=scan).update(
        state=ScanChunk.State.RUNNING,
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    return scan, list(ScanChunk.objects.filter(scan=scan))


def test_slowdown_halves_the_scans_read_limit_at_most_once_a_second_and_it_ramps_back_by_one(
    localaws: LocalAWSHandle,
    sent_tasks: list[tuple[str, int]],
    small_chunks: None,
    settings: Any,
) -> None:
    settings.SCAN_THREADS = 32
    scan, (chunk, other) = _running_chunks(localaws, sent_tasks, 2)
    now = timezone.now()

    def share(chunk: ScanChunk, throttled: int, at: Any) -> int:
        return shared.read_share(
            chunk_id=chunk.pk, scan_id=scan.pk, throttled=throttled, now=at
        )

    assert share(chunk, 0, now) == 32
    assert share(chunk, 3, now) == 16
    # Another chunk throttled in the same second: one cut for the scan, not two.
    assert share(other, 5, now + timedelta(milliseconds=300)) == 16
    assert share(chunk, 1, now + timedelta(milliseconds=1100)) == 8
    assert share(chunk, 0, now + timedelta(milliseconds=1200)) == 9
    assert share(other, 0, now + timedelta(milliseconds=1300)) == 10
    scan.refresh_from_db()
    assert scan.read_limit == 10


def test_the_read_cap_across_processes_gives_a_newcomer_an_even_share_and_forgets_a_lapsed_lease(
    localaws: LocalAWSHandle,
    sent_tasks: list[tuple[str, int]],
    small_chunks: None,
    settings: Any,
) -> None:
    settings.SCAN_THREADS = 32
    settings.SCAN_MAX_INFLIGHT = 40
    scan, (first, second, lapsed) = _running_chunks(localaws, sent_tasks, 3)
    ScanChunk.objects.filter(pk=lapsed.pk).update(
        reads=32, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    now = timezone.now()

    def share(chunk: ScanChunk) -> int:
        return shared.read_share(
            chunk_id=chunk.pk, scan_id=scan.pk, throttled=0, now=now
        )

    assert share(first) == 32  # alone: the lapsed chunk holds nothing
    assert share(second) == 20  # an even share of 40, though 8 were left
    assert share(first) == 20  # the first gives up what the newcomer took
    assert shared.live_reads(now) == 40
    assert shared.window_for(20) == 20
    assert shared.window_for(32) == 64


def test_a_pause_one_chunk_records_pauses_every_chunk_until_one_finds_s3_back(
    localaws: LocalAWSHandle, sent_tasks: list[tuple[str, int]], small_chunks: None
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from imports.scanning.pipeline import ReadPipeline

    scan, _chunks = _running_chunks(localaws, sent_tasks, 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pipeline = ReadPipeline(scan, pool)
        assert shared.scan_state(scan.pk) == (False, False)
        Scan.objects.filter(pk=scan.pk).update(paused_since=timezone.now())
        stop, paused = shared.scan_state(scan.pk)
        shared.follow_pause(pipeline, paused=paused)
        assert (stop, pipeline.breaker.is_open, pipeline.paused) == (False, True, True)
        Scan.objects.filter(pk=scan.pk).update(paused_since=None)
        shared.follow_pause(pipeline, paused=shared.scan_state(scan.pk)[1])
        assert (pipeline.breaker.is_open, pipeline.paused) == (False, False)
    control.scan_cancel(scan=scan, actor=None)
    assert shared.scan_state(scan.pk)[0] is True
