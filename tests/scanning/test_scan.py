"""Scanning a prefix: headers only, by ranged GETs, cached per ETag, indexed into studies and series.

Everything runs against localaws over HTTP; request counts are read from its call log, at the server.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from imports.models import AuditEvent, ObjectHeader, Scan, ScanObject, ScanSeries
from imports.scanning import control, reader, run
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.1.1"


def run_scan(prefix: str = "incoming/", bucket: str = "scan-in") -> Scan:
    scan, created = control.scan_start(
        actor=None, bucket=bucket, prefix=prefix, region="us-east-1", enqueue=False
    )
    assert created
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    return result


def gets(localaws: LocalAWSHandle) -> list[dict[str, Any]]:
    return localaws.calls("s3", "GetObject")


def headers_of(scan: Scan) -> dict[str, ObjectHeader]:
    return {h.key: h for h in ObjectHeader.objects.of_scan(scan)}


@pytest.fixture
def bucket(localaws: LocalAWSHandle) -> LocalAWSHandle:
    localaws.create_bucket("scan-in")
    return localaws


def bundled_dicom_files() -> list[Path]:
    # The files shipped inside the pydicom wheel, listed from disk: get_testdata_files() would try
    # to download the rest.
    return sorted(
        p
        for p in SHIPPED.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".json", ".txt", ".gz")
    )


SHIPPED = Path(pydicom.data.__file__).parent / "test_files"


def test_it_agrees_with_dcmread_on_every_file_pydicom_ships(
    db: None, bucket: LocalAWSHandle
) -> None:
    files = bundled_dicom_files()
    assert len(files) > 40
    for path in files:
        bucket.put(
            f"s3://scan-in/incoming/{path.relative_to(SHIPPED)}", path.read_bytes()
        )
    scan = run_scan()
    headers = headers_of(scan)
    assert len(headers) == len(files)
    compared = 0
    for path in files:
        header = headers[f"incoming/{path.relative_to(SHIPPED)}"]
        try:
            whole = pydicom.dcmread(path)
            expected = (
                whole.StudyInstanceUID,
                whole.SeriesInstanceUID,
                whole.SOPInstanceUID,
                whole.file_meta.TransferSyntaxUID,
            )
        except Exception:
            expected = None
        if expected is not None and header.status == ObjectHeader.Status.OK:
            compared += 1
            assert (
                header.study_instance_uid,
                header.series_instance_uid,
                header.sop_instance_uid,
                header.transfer_syntax_uid,
            ) == tuple(str(v) for v in expected), path.name
        else:
            assert header.status != ObjectHeader.Status.OK or expected is not None
            if header.status != ObjectHeader.Status.OK:
                assert header.error, f"{path.name} has no reason"
    assert compared > 30


def encoded(
    transfer_syntax: str,
    *,
    preamble: bool = True,
    private_bytes: int = 0,
    private_tag: int = 0x00291010,
    **attrs: Any,
) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    ds.file_meta.MediaStorageSOPInstanceUID = UID(
        attrs.get("SOPInstanceUID", generate_uid())
    )
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.PatientName = "Doe^John"
    ds.Modality = "CT"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if private_bytes:
        ds.add_new(private_tag, "OB", b"\x01" * private_bytes)
    ds.PixelData = os.urandom(64 * 1024)  # random, so that deflate cannot shrink it
    ds["PixelData"].VR = "OW"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble, implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
               little_endian=transfer_syntax != ExplicitVRBigEndian)  # fmt: skip
    return buffer.getvalue()


@pytest.mark.parametrize(
    "transfer_syntax",
    [
        "1.2.840.10008.1.2.1",
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_it_reads_each_encoding_without_touching_pixel_data(
    db: None, bucket: LocalAWSHandle, transfer_syntax: str
) -> None:
    data = encoded(transfer_syntax)
    bucket.put("s3://scan-in/incoming/a.dcm", data)
    bucket.clear_calls()
    header = headers_of(run_scan())["incoming/a.dcm"]
    assert header.status == ObjectHeader.Status.OK, header.error
    assert (header.study_instance_uid, header.series_instance_uid) == (STUDY, SERIES)
    assert header.transfer_syntax_uid == transfer_syntax
    assert header.requests == len(gets(bucket)) == 1
    assert header.bytes_read < len(data) // 2


def test_it_reads_a_header_longer_than_the_first_read_in_two_requests(
    db: None, bucket: LocalAWSHandle, settings: Any
) -> None:
    settings.SCAN_FIRST_READ_BYTES = 4096
    data = encoded(
        "1.2.840.10008.1.2.1",
        private_bytes=100 * 1024,
        SeriesDescription="after the private group",
    )
    bucket.put("s3://scan-in/incoming/long.dcm", data)
    bucket.clear_calls()
    header = headers_of(run_scan())["incoming/long.dcm"]
    assert header.status == ObjectHeader.Status.OK, header.error
    assert header.series_instance_uid == SERIES
    assert len(gets(bucket)) == header.requests <= 2
    assert header.bytes_read < len(data)


def test_a_rescan_of_an_unchanged_prefix_reads_nothing(
    db: None, bucket: LocalAWSHandle
) -> None:
    for i in range(5):
        bucket.put(
            f"s3://scan-in/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i),
        )
    first = run_scan()
    assert len(gets(bucket)) == 5
    bucket.clear_calls()
    second = run_scan()
    assert gets(bucket) == []
    assert (second.objects_done, second.objects_cached) == (5, 5)
    assert (
        second.studies.get().instance_count == first.studies.get().instance_count == 5
    )


def test_a_rescan_rereads_only_a_changed_object(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.put("s3://scan-in/incoming/a.dcm", dicom_bytes(study=STUDY, series=SERIES))
    bucket.put("s3://scan-in/incoming/b.dcm", dicom_bytes(study=STUDY, series=SERIES))
    run_scan()
    bucket.put(
        "s3://scan-in/incoming/b.dcm",
        dicom_bytes(study=STUDY, series=SERIES, StudyDescription="CHANGED"),
    )
    bucket.clear_calls()
    scan = run_scan()
    assert len(gets(bucket)) == 1
    assert headers_of(scan)["incoming/b.dcm"].study_description == "CHANGED"


def test_it_lists_past_a_thousand_keys(db: None, bucket: LocalAWSHandle) -> None:
    s3 = bucket.s3_client()
    for i in range(1005):
        s3.put_object(Bucket="scan-in", Key=f"incoming/deep/{i:05}.txt", Body=b"x")
    scan = run_scan()
    assert scan.objects_listed == 1005
    assert len(bucket.calls("s3", "ListObjectsV2")) == 2
    assert ScanObject.objects.filter(scan=scan).count() == 1005
    assert scan.folders == 1


def test_it_indexes_studies_and_series_and_flags_disagreements(
    db: None, bucket: LocalAWSHandle
) -> None:
    other_series = SERIES + ".2"
    for i, description in enumerate(["CT CHEST", "CT CHEST", "CT Chest"]):
        bucket.put(
            f"s3://scan-in/incoming/a{i}.dcm",
            dicom_bytes(
                study=STUDY,
                series=SERIES,
                StudyDescription=description,
                InstanceNumber=i,
            ),
        )
    bucket.put(
        "s3://scan-in/incoming/b.dcm",
        dicom_bytes(
            study=STUDY,
            series=other_series,
            SeriesNumber=2,
            StudyDescription="CT CHEST",
        ),
    )
    scan = run_scan()
    study = scan.studies.get()
    assert study.instance_count == 4
    assert study.study_description == "CT CHEST"
    assert study.variants == {"StudyDescription": ["CT CHEST", "CT Chest"]}
    series = {s.series_instance_uid: s for s in study.series.all()}
    assert series[SERIES].instance_count == 3
    assert series[other_series].series_number == 2
    assert series[SERIES].transfer_syntaxes == ["1.2.840.10008.1.2.1"]


def test_it_records_every_bad_object_with_its_reason(
    db: None, bucket: LocalAWSHandle, settings: Any
) -> None:
    settings.SCAN_JSON_MAX_BYTES = 1024 * 1024
    bucket.put("s3://scan-in/incoming/ok.dcm", dicom_bytes(study=STUDY, series=SERIES))
    bucket.put("s3://scan-in/incoming/empty.dcm", b"")
    bucket.put("s3://scan-in/incoming/fake.dcm", b"\0" * 128 + b"DICM" + b"\xff" * 300)
    bucket.put("s3://scan-in/incoming/notes/readme.txt", b"hello, not a DICOM file")
    bucket.put(
        "s3://scan-in/incoming/truncated.dcm",
        dicom_bytes(study=STUDY, series=SERIES)[:200],
    )
    bucket.put(
        "s3://scan-in/incoming/huge.json", b"{" + b" " * (50 * 1024 * 1024) + b"}"
    )
    bucket.clear_calls()
    scan = run_scan()
    headers = headers_of(scan)
    assert scan.status == Scan.Status.COMPLETED
    assert headers["incoming/ok.dcm"].status == ObjectHeader.Status.OK
    assert (
        headers["incoming/empty.dcm"].status,
        headers["incoming/empty.dcm"].error,
    ) == ("unreadable", "0-byte object")
    # "DICM" after the preamble, then garbage: a DICOM file that cannot be read.
    assert headers["incoming/fake.dcm"].status == ObjectHeader.Status.UNREADABLE
    assert headers["incoming/fake.dcm"].error
    assert headers["incoming/notes/readme.txt"].status == ObjectHeader.Status.NOT_DICOM
    assert headers["incoming/truncated.dcm"].status == ObjectHeader.Status.UNREADABLE
    assert headers["incoming/truncated.dcm"].error
    huge = headers["incoming/huge.json"]
    assert huge.status == ObjectHeader.Status.JSON_INVALID
    assert "metadata files over 1,048,576 bytes are not read" in huge.error
    assert huge.requests == 0
    assert all("huge.json" not in str(call) for call in gets(bucket))
    assert scan.studies.count() == 1


def test_it_indexes_a_study_whose_uids_break_dicom_but_not_healthimaging(
    db: None, bucket: LocalAWSHandle
) -> None:
    # Real archives hold them: a leading zero, and more than DICOM's 64 characters (HealthImaging imports 256).
    study, series = "1.2.840.0123.7", "1.2.840.0123.7." + "1" * 230
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        body = dicom_bytes(study=study, series=series, sop=series + ".1")
    bucket.put("s3://scan-in/incoming/odd.dcm", body)
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    header = headers_of(scan)["incoming/odd.dcm"]
    assert (header.status, header.study_instance_uid, header.series_instance_uid) == (
        ObjectHeader.Status.OK,
        study,
        series,
    )
    assert ScanSeries.objects.get(study__scan=scan).series_instance_uid == series


def test_a_uid_longer_than_healthimaging_imports_is_the_files_reason_not_the_scans_end(
    db: None, bucket: LocalAWSHandle
) -> None:
    # On PostgreSQL a value longer than its column failed the whole scan.
    long_uid = "1.2." + "3" * 300
    with pytest.warns(
        UserWarning, match="exceeds the maximum length of 64 allowed for VR UI"
    ):
        body = dicom_bytes(study=long_uid, series="1.2.3.4", sop="1.2.3.4.5")
    bucket.put("s3://scan-in/incoming/long.dcm", body)
    bucket.put(
        "s3://scan-in/incoming/fine.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    scan = run_scan()
    assert scan.status == Scan.Status.COMPLETED
    headers = headers_of(scan)
    assert headers["incoming/fine.dcm"].status == ObjectHeader.Status.OK
    long_header = headers["incoming/long.dcm"]
    assert long_header.status == ObjectHeader.Status.UNREADABLE
    assert long_header.error == (
        "StudyInstanceUID is 304 characters long; HealthImaging imports at most 256."
    )
    assert long_header.study_instance_uid == ""


def test_it_checks_json_metadata_files_and_records_their_uids(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.put(
        "s3://scan-in/incoming/meta/study.json",
        {
            "0020000D": {"vr": "UI", "Value": [STUDY]},
            "00081030": {"vr": "LO", "Value": ["CT CHEST"]},
        },
    )
    bucket.put(
        "s3://scan-in/incoming/meta/broken.json",
        b'{"00081030": {"vr": "LO", "Value": ["x"]',
    )
    bucket.put(
        "s3://scan-in/incoming/meta/wrong-vr.json",
        {"00081030": {"vr": "PN", "Value": [{"Alphabetic": "x"}]}},
    )
    headers = headers_of(run_scan())
    assert headers["incoming/meta/study.json"].status == ObjectHeader.Status.JSON_VALID
    assert headers["incoming/meta/study.json"].json_study_uids == [STUDY]
    assert (
        headers["incoming/meta/broken.json"].status == ObjectHeader.Status.JSON_INVALID
    )
    assert (
        headers["incoming/meta/wrong-vr.json"].status
        == ObjectHeader.Status.JSON_INVALID
    )
    assert headers["incoming/meta/wrong-vr.json"].json_errors


def test_an_empty_prefix_completes_with_nothing_found(
    db: None, bucket: LocalAWSHandle
) -> None:
    scan = run_scan(prefix="nothing-here/")
    assert (scan.status, scan.objects_listed, scan.studies.count()) == (
        Scan.Status.COMPLETED,
        0,
        0,
    )


def test_a_missing_bucket_fails_with_a_clear_message(
    db: None, localaws: LocalAWSHandle
) -> None:
    scan = run_scan(bucket="no-such-bucket")
    assert scan.status == Scan.Status.FAILED
    assert scan.error == "Bucket “no-such-bucket” does not exist."
    assert not scan.studies.exists()


def test_access_denied_fails_with_a_clear_message(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.add_fault(
        service="s3", operation="ListObjectsV2", error="AccessDenied", count=1
    )
    scan = run_scan()
    assert scan.status == Scan.Status.FAILED
    assert scan.error.startswith(
        "The dashboard may not read s3://scan-in/incoming/ (AccessDenied)"
    )


def test_a_denied_read_is_not_cached_as_the_files_fault(
    db: None, bucket: LocalAWSHandle
) -> None:
    bucket.put("s3://scan-in/incoming/a.dcm", dicom_bytes(study=STUDY, series=SERIES))
    bucket.add_fault(service="s3", operation="GetObject", error="AccessDenied", count=1)
    first_scan = run_scan()
    first = headers_of(first_scan)["incoming/a.dcm"]
    assert first_scan.status == Scan.Status.COMPLETED
    assert first.status == ObjectHeader.Status.UNREADABLE
    assert first.error.startswith("Reading s3://scan-in/incoming/a.dcm: AccessDenied")
    second = headers_of(run_scan())["incoming/a.dcm"]
    assert second.status == ObjectHeader.Status.OK
    # The second scan wrote its own row; the first scan's record is as it was.
    assert second.pk != first.pk
    assert headers_of(first_scan)["incoming/a.dcm"].error == first.error


def test_two_scans_of_one_prefix_share_one_run(db: None) -> None:
    first, created = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    second, created_again = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    assert (created, created_again) == (True, False)
    assert first.pk == second.pk
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SCAN_STARTED).count() == 1


def test_a_scan_runs_only_once(db: None, bucket: LocalAWSHandle) -> None:
    scan, _ = control.scan_start(
        actor=None,
        bucket="scan-in",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
    )
    assert run.scan_run(scan_id=scan.pk) is not None
    assert run.scan_run(scan_id=scan.pk) is None


def test_a_queued_scan_is_cancelled_on_the_spot(db: None) -> None:
    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    assert control.scan_cancel(scan=scan, actor=None)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.CANCELLED
    assert run.scan_run(scan_id=scan.pk) is None


def test_starting_a_scan_enqueues_its_task_after_commit(
    db: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        control.scan_start(actor=None, bucket="b", prefix="p/", region="us-east-1")
    assert len(callbacks) == 1


def test_the_command_prints_one_json_line_per_object(
    db: None, bucket: LocalAWSHandle, capsys: Any
) -> None:
    import json

    from django.core.management import call_command

    bucket.put(
        "s3://scan-in/incoming/a.dcm",
        dicom_bytes(study=STUDY, series=SERIES, Modality="MR"),
    )
    bucket.put("s3://scan-in/incoming/b.txt", b"hello")
    call_command("scan", "s3://scan-in/incoming/", "--json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["key"] for line in lines] == ["incoming/a.dcm", "incoming/b.txt"]
    assert set(lines[0]) == {
        "key",
        "kind",
        "status",
        "study_uid",
        "series_uid",
        "sop_uid",
        "modality",
        "bytes_read",
        "requests",
        "error",
    }
    assert (
        lines[0]["kind"],
        lines[0]["status"],
        lines[0]["study_uid"],
        lines[0]["modality"],
    ) == ("dicom", "ok", STUDY, "MR")
    assert lines[0]["requests"] == 1
    assert (lines[1]["kind"], lines[1]["status"]) == ("other", "not_dicom")


def test_the_command_prints_a_summary(
    db: None, bucket: LocalAWSHandle, capsys: Any
) -> None:
    from django.core.management import call_command

    bucket.put("s3://scan-in/incoming/a.dcm", dicom_bytes(study=STUDY, series=SERIES))
    call_command("scan", "s3://scan-in/incoming/")
    out = capsys.readouterr().out
    assert "Scan of s3://scan-in/incoming/: Completed" in out
    assert "studies   1 (0 with inconsistent attributes), series 1" in out


def test_the_command_rejects_a_malformed_uri(db: None) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="is not an S3 URI HealthImaging accepts"):
        call_command("scan", "s3:/nope")


def test_the_command_fails_on_a_missing_bucket(
    db: None, localaws: LocalAWSHandle
) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Bucket “nope-bucket” does not exist."):
        call_command("scan", "s3://nope-bucket/x/")


def test_a_scan_whose_worker_died_is_requeued_and_resumes_from_the_cache(
    db: None, bucket: LocalAWSHandle, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    for i in range(3):
        bucket.put(
            f"s3://scan-in/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i),
        )
    scan, _ = control.scan_start(
        actor=None,
        bucket="scan-in",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
    )
    # A worker claimed it, then vanished: RUNNING, with a heartbeat long gone.
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING,
        attempts=1,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert control.scans_recover_stalled() == [scan.pk]
    assert len(callbacks) == 1
    scan.refresh_from_db()
    assert scan.status == Scan.Status.QUEUED
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    assert (result.status, result.attempts, result.objects_done) == (
        Scan.Status.COMPLETED,
        2,
        3,
    )


def test_a_scan_with_a_live_heartbeat_is_left_alone(db: None) -> None:
    from django.utils import timezone

    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )
    assert control.scans_recover_stalled() == []
    scan.refresh_from_db()
    assert scan.status == Scan.Status.RUNNING


def test_a_scan_that_keeps_losing_its_worker_fails_with_a_reason(
    db: None, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    scan, _ = control.scan_start(
        actor=None, bucket="b", prefix="p/", region="us-east-1", enqueue=False
    )
    Scan.objects.filter(pk=scan.pk).update(
        status=Scan.Status.RUNNING,
        attempts=settings.SCAN_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    assert control.scans_recover_stalled() == []
    scan.refresh_from_db()
    assert scan.status == Scan.Status.FAILED
    assert "without finishing (its worker was lost); start it again." in scan.error


def test_each_folder_learns_the_size_of_its_headers() -> None:
    sizes = reader.FirstReadSizes(8192)
    assert sizes.size_for("p/series1/1.dcm") == 8192
    for length in (20_000, 21_000, 20_500):
        sizes.observe(
            ObjectHeader(
                key="p/series1/x.dcm", kind="dicom", status="ok", header_length=length
            )
        )
    # A quarter above the median (20,500), rounded up to 8 KiB steps.
    assert sizes.size_for("p/series1/4.dcm") == 32768
    assert sizes.size_for("p/series2/1.dcm") == 8192
    sizes.observe(
        ObjectHeader(
            key="p/series2/x.dcm", kind="dicom", status="ok", header_length=1000
        )
    )
    assert sizes.size_for("p/series2/2.dcm") == 8192
    sizes.observe(
        ObjectHeader(
            key="p/series3/x.dcm",
            kind="dicom",
            status="unreadable",
            header_length=90_000,
        )
    )
    assert sizes.size_for("p/series3/2.dcm") == 8192


def test_a_folder_of_long_headers_costs_one_get_per_object_after_the_first(
    db: None, bucket: LocalAWSHandle, settings: Any
) -> None:
    count = 80
    for i in range(count):
        bucket.put(
            f"s3://scan-in/incoming/long/{i:02}.dcm",
            # A private block before the patient attributes: the reader must read past it.
            encoded(
                "1.2.840.10008.1.2.1",
                private_bytes=20 * 1024,
                private_tag=0x00091010,
                SOPInstanceUID=f"{SERIES}.{i}",
            ),
        )
    bucket.clear_calls()
    scan = run_scan()
    headers = headers_of(scan)
    # Reads run in parallel: those started before the first header length was known use the
    # default size and need a second request; every later one needs one.
    in_flight = 2 * settings.SCAN_THREADS
    assert len(gets(bucket)) <= count + in_flight
    assert sum(1 for h in headers.values() if h.requests == 1) >= count - in_flight
    for header in headers.values():
        assert header.header_length is not None
        assert header.bytes_read <= -(-2 * header.header_length // 8192) * 8192


def test_every_series_of_every_study_gets_its_attributes(
    db: None, bucket: LocalAWSHandle
) -> None:
    for study in (1, 2):
        for series in (1, 2):
            bucket.put(
                f"s3://scan-in/incoming/{study}/{series}.dcm",
                dicom_bytes(
                    study=f"{STUDY}.{study}",
                    series=f"{STUDY}.{study}.{series}",
                    SeriesNumber=series,
                    SeriesDescription=f"series {study}.{series}",
                    Modality="MR",
                ),
            )
    scan = run_scan()
    found = sorted(
        (s.series_instance_uid, s.series_number, s.series_description, s.modality)
        for s in ScanSeries.objects.filter(study__scan=scan)
    )
    assert found == [
        (f"{STUDY}.{study}.{series}", series, f"series {study}.{series}", "MR")
        for study in (1, 2)
        for series in (1, 2)
    ]
