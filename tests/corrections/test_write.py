"""`import_job corrections --write --mappings-out`: the files written to localaws over HTTP, the scan kept current,
the mappings CSV accepted by `import_job validate`, conditional writes, the refusals, and an audit with no values."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from imports.aws import client as aws
from imports.aws import image_sets
from imports.corrections import matching, sheet, write
from imports.drafts import approval
from imports.drafts import services as drafts
from imports.jobs import request as jobrequest
from imports.jobs import submit as jobs
from imports.mappings.csvfile import mappings_read_csv
from imports.models import AuditEvent, Datastore, ObjectHeader, Scan, ScanStudy
from localaws.testing import LocalAWSHandle
from tests.builders import BUCKET, INPUT, PREFIX
from tests.corrections.conftest import (
    MERGE_1,
    MERGE_1_SERIES_2,
    MERGE_2,
    MERGE_3,
    TWIN_A,
    TWIN_B,
    ZEROS,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _run_as_alice(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


@pytest.fixture
def puts() -> Iterator[list[dict[str, Any]]]:
    """The parameters of every PutObject the app's own S3 client sends (it still goes to localaws over HTTP)."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append({k: v for k, v in params.items() if k != "Body"})

    client = aws.s3_client("us-east-1")
    client.meta.events.register("provide-client-params.s3.PutObject", record)
    yield sent
    client.meta.events.unregister("provide-client-params.s3.PutObject", record)


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command(
            "import_job", *args, "--datastore", "Composer tests", stdout=out, stderr=err
        )
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def write_run(sheet_path: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return run(
        "corrections", "--sheet", str(sheet_path), "--write", "--mappings-out", str(out), *extra
    )  # fmt: skip


def stored(localaws: LocalAWSHandle, path: str) -> dict[str, Any]:
    body = localaws.s3_client().get_object(Bucket=BUCKET, Key=PREFIX + path)["Body"]
    return json.loads(body.read())  # type: ignore[no-any-return]


def sheet_folder(sheet_path: Path) -> str:
    return (
        f"metadata/corrections/{sheet.sheet_read(sheet_path.read_bytes()).sha256[:12]}"
    )


def test_a_sheet_keyed_by_accession_is_written_mapped_and_accepted_by_validate(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
    puts: list[dict[str, Any]],
) -> None:
    sheet_path = write_sheet(
        'AccessionNumber,"(0010,0020)",PatientName,StudyDescription\n'
        "0012345,000988,New^Name,CT BRAIN\n"
        "M2,,,<empty>\n"
    )
    out = tmp_path / "mappings.csv"
    code, stdout, stderr = write_run(sheet_path, out)
    assert code == 0, stderr
    folder = sheet_folder(sheet_path)
    assert f"Wrote 2 files under {folder}/ (0 over an earlier version)" in stdout
    assert stored(localaws, f"{folder}/{ZEROS}.json") == {
        "0020000D": {"vr": "UI", "Value": [ZEROS]},
        "00100020": {"vr": "LO", "Value": ["000988"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "New^Name"}]},
        "00081030": {"vr": "LO", "Value": ["CT BRAIN"]},
    }
    assert stored(localaws, f"{folder}/{MERGE_2}.json") == {
        "0020000D": {"vr": "UI", "Value": [MERGE_2]},
        "00081030": {"vr": "LO"},  # <empty> clears it
    }
    assert [p.get("IfNoneMatch") for p in puts] == ["*", "*"]
    assert not [p for p in puts if "IfMatch" in p]
    mappings = mappings_read_csv(out.read_bytes())
    assert sorted((m.study_instance_uid, m.series_instance_uid, m.metadata_file_path) for m in mappings) == sorted(
        [(ZEROS, "", f"{folder}/{ZEROS}.json"), (MERGE_2, "", f"{folder}/{MERGE_2}.json")]
    )  # fmt: skip
    # The files are in the scan, which is still current: validate uses it without scanning again.
    scans = Scan.objects.count()
    code, stdout, _ = run("validate", "--mappings", str(out), "--json")
    assert code == 0
    problems = [json.loads(line) for line in stdout.splitlines() if line]
    assert not [p for p in problems if p["severity"] == "error"]
    assert {p["code"] for p in problems} <= {"unmapped_study"}
    assert Scan.objects.count() == scans
    # The stored document is in the scan's index too (what validation read).
    header = ObjectHeader.objects.get(key=f"{PREFIX}{folder}/{ZEROS}.json")
    assert header.json_study_uids == [ZEROS]


def test_a_sheet_keyed_by_uid_writes_study_and_series_files_and_a_merge_writes_each_study(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
) -> None:
    sheet_path = write_sheet(
        "StudyInstanceUID,SeriesInstanceUID,PatientID,Scope,StudyDescription,SeriesDescription\n"
        f"{TWIN_B},,,,MR KNEE LEFT,\n"
        f",{MERGE_1_SERIES_2},,,,second series\n"
        ",,PAT-M,patient,CT THORAX,\n"
    )
    out = tmp_path / "mappings.csv"
    code, stdout, stderr = write_run(sheet_path, out, "--json")
    assert code == 0, stderr
    *rows, last = [json.loads(line) for line in stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert (last["row"], last["status"]) == (None, "written")
    folder = sheet_folder(sheet_path)
    assert stored(localaws, f"{folder}/{MERGE_1_SERIES_2}.json") == {
        "0020000D": {"vr": "UI", "Value": [MERGE_1]},
        "0020000E": {"vr": "UI", "Value": [MERGE_1_SERIES_2]},
        "0008103E": {"vr": "LO", "Value": ["second series"]},
    }
    assert stored(localaws, f"{folder}/{TWIN_B}.json")["00081030"] == {
        "vr": "LO",
        "Value": ["MR KNEE LEFT"],
    }
    for study in (MERGE_1, MERGE_2, MERGE_3):
        assert stored(localaws, f"{folder}/{study}.json")["00081030"]["Value"] == [
            "CT THORAX"
        ]
    mapped = {
        (m.study_instance_uid, m.series_instance_uid)
        for m in mappings_read_csv(out.read_bytes())
    }
    assert mapped == {
        (TWIN_B, ""),
        (MERGE_1, MERGE_1_SERIES_2),
        (MERGE_1, ""),
        (MERGE_2, ""),
        (MERGE_3, ""),
    }
    code, _, _ = run("validate", "--mappings", str(out))
    assert code == 0


def test_writing_the_sheet_again_writes_over_the_scanned_version_only(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
    puts: list[dict[str, Any]],
) -> None:
    sheet_path = write_sheet(
        f"StudyInstanceUID,StudyDescription\n{TWIN_B},MR KNEE LEFT\n"
    )
    out = tmp_path / "mappings.csv"
    assert write_run(sheet_path, out)[0] == 0
    key = f"{PREFIX}{sheet_folder(sheet_path)}/{TWIN_B}.json"
    first = localaws.s3_client().head_object(Bucket=BUCKET, Key=key)["ETag"]
    puts.clear()
    code, stdout, _ = write_run(sheet_path, out)
    assert code == 0
    assert "(1 over an earlier version)" in stdout
    assert [(p.get("IfMatch"), p.get("IfNoneMatch")) for p in puts] == [(first, None)]


def test_a_file_changed_since_the_scan_is_not_overwritten_and_nothing_is_mapped(
    store: Datastore,
    scan: Scan,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    alice: User,
) -> None:
    parsed = sheet.sheet_read(
        write_sheet(f"StudyInstanceUID,StudyDescription\n{TWIN_B},MR\n").read_bytes()
    )
    results = matching.corrections_match(scan=scan, sheet=parsed)
    write.corrections_write(scan=scan, sheet=parsed, results=results, actor=alice)
    path = f"{PREFIX}metadata/corrections/{write.sheet_id(parsed)}/{TWIN_B}.json"
    localaws.put(
        f"s3://{BUCKET}/{path}", b'{"00081030": {"vr": "LO", "Value": ["theirs"]}}'
    )
    with pytest.raises(
        write.WriteFailed, match="1 of 1 files could not be written"
    ) as failed:
        write.corrections_write(scan=scan, sheet=parsed, results=results, actor=alice)
    assert failed.value.written == []
    assert stored(localaws, path.removeprefix(PREFIX)) == {
        "00081030": {"vr": "LO", "Value": ["theirs"]}
    }


def test_a_row_error_writes_nothing_and_exits_1(
    store: Datastore,
    alice: User,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
) -> None:
    sheet_path = write_sheet("AccessionNumber,StudyDescription\n12345,CT\nM2,CT\n")
    out = tmp_path / "mappings.csv"
    localaws.clear_calls()
    code, stdout, _ = write_run(sheet_path, out)
    assert code == 1
    assert "fix the errors; nothing was written." in stdout
    assert not out.exists()
    assert not [c for c in localaws.calls("s3") if c["operation"] == "PutObject"]
    assert not AuditEvent.objects.filter(
        action=AuditEvent.Action.METADATA_WRITTEN
    ).exists()
    # The service refuses too, whoever calls it.
    parsed = sheet.sheet_read(sheet_path.read_bytes())
    scan = Scan.objects.get()
    results = matching.corrections_match(scan=scan, sheet=parsed)
    with pytest.raises(write.WriteRefused, match=r"1 row has errors \(row 2\)"):
        write.corrections_write(scan=scan, sheet=parsed, results=results, actor=alice)
    assert not [c for c in localaws.calls("s3") if c["operation"] == "PutObject"]


def test_write_and_mappings_out_go_together(
    store: Datastore, write_sheet: Callable[[str], Path]
) -> None:
    sheet_path = write_sheet(f"StudyInstanceUID,StudyDescription\n{TWIN_B},MR\n")
    with pytest.raises(Exception, match="--write and --mappings-out go together"):
        run("corrections", "--sheet", str(sheet_path), "--write")


def test_a_sheet_correcting_more_than_1000_studies_is_refused_before_any_write(
    db: None, localaws: LocalAWSHandle, alice: User
) -> None:
    # An index of 1,001 studies of one patient, built in the database: a merge row then matches them all.
    scan = Scan.objects.create(
        region="us-east-1", bucket=BUCKET, prefix=PREFIX, status=Scan.Status.COMPLETED
    )
    ScanStudy.objects.bulk_create(
        ScanStudy(scan=scan, study_instance_uid=f"1.2.3.{n}", patient_id="P1", instance_count=1, bytes=1)
        for n in range(1, 1002)
    )  # fmt: skip
    parsed = sheet.sheet_read(b"PatientID,Scope,StudyDescription\nP1,patient,CT\n")
    results = matching.corrections_match(scan=scan, sheet=parsed)
    assert len(results[0].study_instance_uids) == 1001
    with pytest.raises(
        write.WriteRefused,
        match="the sheet corrects 1,001 studies; one sheet corrects at most 1,000",
    ):
        write.corrections_write(scan=scan, sheet=parsed, results=results, actor=alice)
    assert not [c for c in localaws.calls("s3") if c["operation"] == "PutObject"]
    assert not AuditEvent.objects.exists()


def test_the_audit_names_sheet_rows_files_and_tags_never_a_value(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    sheet_path = write_sheet(
        'AccessionNumber,"(0010,0020)",PatientName\n0012345,000988,Secret^Person\n'
    )
    assert write_run(sheet_path, tmp_path / "m.csv")[0] == 0
    event = AuditEvent.objects.get(action=AuditEvent.Action.METADATA_WRITTEN)
    assert event.actor_username == "alice"
    assert (
        event.details["sheet_sha256"]
        == sheet.sheet_read(sheet_path.read_bytes()).sha256
    )
    assert event.details["rows"] == 1
    (file,) = event.details["files"]
    assert file["study_instance_uid"] == ZEROS
    assert file["tags_changed"] == ["PatientName (0010,0010)", "PatientID (0010,0020)"]
    text = json.dumps(event.details) + event.summary
    assert "000988" not in text
    assert "Secret" not in text


def test_the_written_mappings_uploaded_into_a_draft_need_an_approval_of_their_patient_changes(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    tmp_path: Path,
    alice: User,
) -> None:
    sheet_path = write_sheet(
        'AccessionNumber,"(0010,0020)",StudyDescription\n0012345,000988,CT BRAIN\n'
    )
    out = tmp_path / "mappings.csv"
    assert write_run(sheet_path, out)[0] == 0
    draft = drafts.draft_start(
        actor=alice,
        datastore=store,
        input_s3_uri=INPUT,
        output_s3_uri=store.output_s3_uri,
    )
    assert draft.scan == Scan.objects.get()  # the scan the write kept current
    draft = drafts.draft_import_csv(
        draft=draft, actor=alice, version=1, data=out.read_bytes()
    )
    assert approval.draft_patient_changes(draft=draft).tags == ["PatientID (0010,0020)"]
    assert "PatientID (0010,0020) in 1 mapped file" in approval.approval_problem(
        draft=draft
    )


def test_a_sheet_that_changes_nothing_writes_no_file_and_a_header_only_csv(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
) -> None:
    sheet_path = write_sheet("AccessionNumber,StudyDescription\nM2,CT CHEST\n")
    out = tmp_path / "mappings.csv"
    localaws.clear_calls()
    code, stdout, _ = write_run(sheet_path, out)
    assert code == 0
    assert "No row changes anything: no file was written" in stdout
    assert out.read_text() == "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
    assert not [c for c in localaws.calls("s3") if c["operation"] == "PutObject"]


def test_a_uid_row_a_series_row_and_a_three_study_merge_reach_the_stored_metadata(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    localaws: LocalAWSHandle,
    tmp_path: Path,
) -> None:
    """Written, mapped, submitted through the dashboard's own submission and found in the image sets HealthImaging
    (localaws) made: what the issue asks of each kind of row beyond the accession-keyed one (the browser
    walkthrough imports that one)."""
    store.datastore_id = localaws.create_datastore()
    store.save()
    localaws.create_bucket(store.output_s3_uri.split("/")[2])
    sheet_path = write_sheet(
        "StudyInstanceUID,SeriesInstanceUID,PatientID,Scope,StudyDescription,SeriesDescription,PatientName\n"
        f"{TWIN_B},,,,MR KNEE LEFT,,\n"
        f",{MERGE_1_SERIES_2},,,,second series,\n"
        ",,PAT-M,patient,,,Merged^Patient\n"
    )
    out = tmp_path / "mappings.csv"
    code, _, stderr = write_run(sheet_path, out)
    assert code == 0, stderr
    job = jobs.job_create(
        actor=None,
        draft=None,
        datastore=store,
        request=jobrequest.job_request_build(
            datastore=store, mappings=mappings_read_csv(out.read_bytes())
        ),
        idempotency_key="corrections-import",
    )
    jobs.job_submit(job_id=job.pk)
    job.refresh_from_db()
    assert job.aws_job_id
    props = localaws.wait_for_job(store.datastore_id, job.aws_job_id, timeout=60)
    assert props["jobStatus"] == "COMPLETED", props.get("message")
    by_series = {
        s["seriesInstanceUID"]: s["imageSetId"]
        for s in localaws.image_sets(store.datastore_id)
    }

    def attribute(series: str, level: str, keyword: str) -> Any:
        # Read as the verification reads it: GetImageSetMetadata, keyed by attribute name.
        metadata = image_sets.get_image_set_metadata(
            region=store.region,
            datastore_id=store.datastore_id,
            image_set_id=by_series[series],
        )
        holder = (
            metadata["Study"]["Series"][series]["DICOM"]
            if level == "series"
            else metadata[level]["DICOM"]
        )
        return holder.get(keyword)

    assert attribute(f"{TWIN_B}.1", "Study", "StudyDescription") == "MR KNEE LEFT"
    assert attribute(MERGE_1_SERIES_2, "series", "SeriesDescription") == "second series"
    # The series row set its series only: the study's other series keeps its own description.
    assert attribute(f"{MERGE_1}.1", "series", "SeriesDescription") == "series 1"
    for series in (f"{MERGE_1}.1", MERGE_1_SERIES_2, f"{MERGE_2}.1", f"{MERGE_3}.1"):
        assert attribute(series, "Patient", "PatientName") == "Merged^Patient", series
    # Not in the sheet: untouched.
    assert attribute(f"{TWIN_A}.1", "Patient", "PatientName") == "Patient^PAT-A"
