"""Tracking jobs against localaws over HTTP: the poller, per-file results, external jobs, the email."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone

from imports.jobs import limiter
from imports.jobs import results as jobresults
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.models import AuditEvent, Datastore, ImportJob, ImportJobResult
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import make_job
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.7"
SERIES = STUDY + ".1"


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"


@pytest.fixture
def hi_datastore(localaws: LocalAWSHandle, datastore: Datastore) -> Datastore:
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    return datastore


def _confirm(
    datastore: Datastore, actor: User | None = None, prefix: str = "incoming/"
) -> ImportJob:
    return make_job(datastore, actor=actor, input_s3_uri=f"s3://dicom-input/{prefix}")


def _run(job: ImportJob) -> ImportJob:
    """Submit, poll until AWS says it ended, read the results: what the worker and beat do."""
    assert jobs.job_submit(job_id=job.pk) is None

    def ended() -> bool:
        jobtracking.jobs_poll()
        job.refresh_from_db()
        return job.has_ended

    wait_for(ended, timeout=20, what="the job to end")
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    return job


def test_a_job_with_a_non_dicom_file_is_completed_with_errors_and_every_file_is_stored(
    localaws: LocalAWSHandle, hi_datastore: Datastore, alice: User
) -> None:
    for i in range(3):
        localaws.put(
            f"s3://dicom-input/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i),
        )
    localaws.put("s3://dicom-input/incoming/notes.txt", b"not dicom")
    job = _run(_confirm(hi_datastore, alice))

    assert job.status == ImportJob.Status.COMPLETED
    assert job.completed_with_errors
    assert job.display_status == "Completed with errors"
    assert job.status_code == "completed_with_errors"
    assert (job.success_count, job.failure_count, job.invalid_line_count) == (3, 1, 0)
    assert (job.scanned_files, job.imported_files, job.customer_error_files) == (
        4,
        3,
        1,
    )
    assert job.generated_image_sets == 1
    assert job.image_sets[0]["isPrimary"] is True
    assert job.output_folder_uri.endswith(
        f"{hi_datastore.datastore_id}-DicomImport-{job.aws_job_id}/"
    )
    failed = ImportJobResult.objects.get(
        job=job, outcome=ImportJobResult.Outcome.FAILURE
    )
    assert failed.input_file == "incoming/notes.txt"
    assert failed.exception_type == "ValidationException"
    assert "TransferSyntaxUID" in failed.message
    success = ImportJobResult.objects.filter(
        job=job, outcome=ImportJobResult.Outcome.SUCCESS
    )
    assert {r.image_set_id for r in success} == {job.image_sets[0]["imageSetId"]}
    # One audit event per status change, in order.
    changes = list(
        AuditEvent.objects.filter(
            action=AuditEvent.Action.JOB_STATUS_CHANGED, target_id=str(job.pk)
        )
        .order_by("id")
        .values_list("details__to", flat=True)
    )
    assert changes[0] == "submitted"
    assert changes[-2:] == ["completed", "completed_with_errors"]
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 1


def test_a_conflicting_reimport_makes_a_non_primary_image_set_that_is_flagged(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    localaws.put("s3://dicom-input/a/1.dcm", dicom_bytes(study=STUDY, series=SERIES))
    localaws.put(
        "s3://dicom-input/b/1.dcm",
        dicom_bytes(study=STUDY, series=SERIES, PatientID="OTHER"),
    )
    first = _run(_confirm(hi_datastore, prefix="a/"))
    second = _run(_confirm(hi_datastore, prefix="b/"))
    assert first.non_primary_count == 0
    assert second.non_primary_count == 1
    assert not second.completed_with_errors
    row = ImportJobResult.objects.get(job=second)
    assert row.is_primary is False


def _write_output(
    localaws: LocalAWSHandle, folder: str, files: dict[str, bytes]
) -> None:
    for name, body in files.items():
        localaws.put(folder + name, body)


def _ended_job(datastore: Datastore, folder: str, **fields: Any) -> ImportJob:
    return ImportJob.objects.create(
        datastore=datastore,
        aws_job_id=uuid.uuid4().hex,
        status=ImportJob.Status.COMPLETED,
        results=ImportJob.Results.PENDING,
        output_folder_uri=folder,
        ended_at=timezone.now(),
        **fields,
    )


def test_an_ndjson_line_that_is_not_json_is_recorded_and_the_rest_ingested(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    folder = "s3://dicom-output/results/x/"
    success = [
        json.dumps(
            {
                "inputFile": f"in/{i}.dcm",
                "importResponse": {"imageSetId": "a" * 32, "isPrimary": True},
            }
        )
        for i in range(2500)
    ]
    success.insert(7, '{"inputFile": "in/broken.dcm", "importResp')
    _write_output(
        localaws,
        folder,
        {
            "job-output-manifest.json": json.dumps(
                {"jobSummary": {"numberOfScannedFiles": 2501}}
            ).encode(),
            "SUCCESS/success.ndjson": "\n".join(success).encode(),
            "FAILURE/failure.ndjson": b"",
        },
    )
    job = _ended_job(hi_datastore, folder)
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    assert (job.success_count, job.invalid_line_count) == (2500, 1)
    assert job.completed_with_errors
    bad = ImportJobResult.objects.get(job=job, outcome=ImportJobResult.Outcome.INVALID)
    assert bad.line == 8
    assert "SUCCESS/success.ndjson" in bad.message
    assert job.results == ImportJob.Results.DONE


def test_reading_results_twice_stores_them_once(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    folder = "s3://dicom-output/results/y/"
    line = json.dumps(
        {
            "inputFile": "in/x.dcm",
            "exception": {"exceptionType": "ValidationException", "message": "bad"},
        }
    )
    _write_output(
        localaws,
        folder,
        {
            "job-output-manifest.json": b'{"jobSummary": {}}',
            "FAILURE/failure.ndjson": line.encode(),
        },
    )
    job = _ended_job(hi_datastore, folder)
    jobresults.job_ingest_results(job_id=job.pk)
    ImportJob.objects.filter(pk=job.pk).update(results=ImportJob.Results.PENDING)
    jobresults.job_ingest_results(job_id=job.pk)
    assert ImportJobResult.objects.filter(job=job).count() == 1


def test_a_missing_manifest_is_retried_then_the_results_are_read_without_it(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    settings.JOBS_MANIFEST_WAIT_S = 30
    folder = "s3://dicom-output/results/late/"
    line = json.dumps(
        {"inputFile": "in/x.dcm", "importResponse": {"imageSetId": "b" * 32}}
    )
    _write_output(localaws, folder, {"SUCCESS/success.ndjson": line.encode()})
    job = _ended_job(hi_datastore, folder)
    assert (
        jobresults.job_ingest_results(job_id=job.pk) == settings.JOBS_MANIFEST_RETRY_S
    )
    job.refresh_from_db()
    # The waiter keeps its claim until its retry is due: the poller adds no second reader.
    assert job.results == ImportJob.Results.INGESTING
    assert job.results_lease_until is not None
    assert not ImportJobResult.objects.filter(job=job).exists()

    ImportJob.objects.filter(pk=job.pk).update(
        ended_at=timezone.now() - timedelta(seconds=31),
        results_lease_until=timezone.now() - timedelta(seconds=1),  # the retry is due
    )
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.results == ImportJob.Results.DONE
    assert job.success_count == 1
    assert "did not appear within 30 s" in job.results_error


def test_a_late_manifest_has_one_waiter_however_often_the_poller_runs(
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.JOBS_MANIFEST_WAIT_S = 300
    folder = "s3://dicom-output/results/later/"
    _write_output(localaws, folder, {"SUCCESS/success.ndjson": b""})
    job = _ended_job(hi_datastore, folder)
    ImportJob.objects.filter(pk=job.pk).update(
        ended_at=timezone.now()
        - timedelta(seconds=60)  # past the poller's grace for PENDING
    )
    assert jobresults.job_ingest_results(job_id=job.pk) is not None
    with django_capture_on_commit_callbacks(execute=False) as sent:
        for _ in range(10):  # 20 s of beat, while the waiter waits
            jobtracking.jobs_poll()
    assert sent == []
    gets = [c for c in localaws.calls("s3") if c["operation"] == "GetObject"]
    assert len(gets) == 1
    # A reader that died holding the claim is replaced once its lease has run out.
    ImportJob.objects.filter(pk=job.pk).update(
        results_lease_until=timezone.now() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        jobtracking.jobs_poll()
    assert len(sent) == 1


def test_the_poller_spends_at_most_its_budget_and_viewers_add_no_aws_calls(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any, client_bob: Client
) -> None:
    settings.JOBS_POLL_BUDGET = 3
    settings.JOBS_POLL_FIRST_S = 60
    localaws.configure(job_submitted_delay_s=60)
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    created = [_confirm(hi_datastore) for _ in range(5)]
    for job in created:
        jobs.job_submit(job_id=job.pk)
    ImportJob.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    localaws.clear_calls()
    assert jobtracking.jobs_poll() == 3
    assert len(localaws.calls("medical-imaging", "GetDICOMImportJob")) == 3
    for _ in range(20):
        for job in created:
            assert client_bob.get(f"/jobs/{job.pk}/status/").status_code == 200
    assert len(localaws.calls("medical-imaging", "GetDICOMImportJob")) == 3
    # The next run asks about the jobs the first one left out, not the same ones again.
    assert jobtracking.jobs_poll() == 2
    assert jobtracking.jobs_poll() == 0


def test_jobs_started_outside_the_dashboard_are_brought_into_the_history_once(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    aws_job = localaws.start_import(
        hi_datastore.datastore_id,
        "s3://dicom-input/incoming/",
        "s3://dicom-output/results/",
    )
    localaws.wait_for_job(hi_datastore.datastore_id, aws_job)
    mine = _run(_confirm(hi_datastore))
    assert jobtracking.jobs_sync_external() == 1
    assert jobtracking.jobs_sync_external() == 0
    external = ImportJob.objects.get(aws_job_id=aws_job)
    assert external.external
    assert external.status == ImportJob.Status.COMPLETED
    assert not ImportJob.objects.get(pk=mine.pk).external
    assert (
        AuditEvent.objects.filter(action=AuditEvent.Action.JOB_DISCOVERED).count() == 1
    )
    # Its results are read like any other job's (the output folder comes from GetDICOMImportJob).
    assert jobresults.job_ingest_results(job_id=external.pk) is None
    external.refresh_from_db()
    assert external.success_count == 1


def test_the_submitter_gets_one_email_when_the_job_ends(
    localaws: LocalAWSHandle, hi_datastore: Datastore, alice: User
) -> None:
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    localaws.put("s3://dicom-input/incoming/x.txt", b"not dicom")
    job = _run(_confirm(hi_datastore, alice))
    assert jobtracking.job_notify(job_id=job.pk)
    assert not jobtracking.job_notify(job_id=job.pk)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.org"]
    assert message.subject == f"Import job {job.pk}: Completed with errors"
    assert "failed: 1" in message.body
    assert f"/jobs/{job.pk}/" in message.body
    # No file names or UIDs leave the dashboard by email.
    assert "x.txt" not in message.body
    assert STUDY not in message.body


def test_a_job_that_aws_fails_keeps_its_message(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    localaws.add_fault(
        fail_job=True, message="DICOM import job has failed. SOMETHING: broken"
    )
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    job = _run(_confirm(hi_datastore))
    assert job.status == ImportJob.Status.FAILED
    assert "SOMETHING" in job.message
    assert job.failure_count == 1


class _Killed(BaseException):
    """The reader's process dying: no `except Exception` in the reader catches it."""


def _forty_results(localaws: LocalAWSHandle, folder: str) -> None:
    def line(n: int, outcome: str) -> str:
        if outcome == "success":
            return json.dumps(
                {
                    "inputFile": f"in/{n}.dcm",
                    "importResponse": {"imageSetId": "c" * 32, "isPrimary": True},
                }
            )
        return json.dumps(
            {
                "inputFile": f"in/bad-{n}.dcm",
                "exception": {"exceptionType": "ValidationException", "message": "bad"},
            }
        )

    _write_output(
        localaws,
        folder,
        {
            "job-output-manifest.json": b'{"jobSummary": {"numberOfScannedFiles": 40}}',
            "SUCCESS/success.ndjson": "\n".join(
                line(n, "success") for n in range(35)
            ).encode(),
            "FAILURE/failure.ndjson": "\n".join(
                line(n, "failure") for n in range(5)
            ).encode(),
        },
    )


def test_a_reader_that_dies_part_way_is_replaced_after_its_short_lease_and_the_replacement_resumes(
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    settings.JOBS_INGEST_LEASE_S = 120
    folder = "s3://dicom-output/results/killed/"
    _forty_results(localaws, folder)
    job = _ended_job(hi_datastore, folder)
    monkeypatch.setattr(jobresults, "BATCH", 10)
    store = jobresults._store
    stores: list[int] = []

    def dies_before_the_third_batch(*args: Any) -> None:
        stores.append(1)
        if len(stores) == 3:
            raise _Killed
        store(*args)

    monkeypatch.setattr(jobresults, "_store", dies_before_the_third_batch)
    with pytest.raises(_Killed):
        jobresults.job_ingest_results(job_id=job.pk)
    job.refresh_from_db()
    # Two batches stored, the place reached recorded, the lease renewed by the last batch and short.
    assert ImportJobResult.objects.filter(job=job).count() == 20
    assert job.results == ImportJob.Results.INGESTING
    assert job.results_resume == [0, 20]
    assert job.results_lease_until is not None
    assert job.results_lease_until <= timezone.now() + timedelta(seconds=120)
    assert job.results_lease_until > timezone.now() + timedelta(seconds=100)

    monkeypatch.setattr(jobresults, "_store", store)
    # While the lease runs, nobody else reads.
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    assert ImportJobResult.objects.filter(job=job).count() == 20
    # Once it has run out, a new reader resumes after line 20 of the success file.
    ImportJob.objects.filter(pk=job.pk).update(
        results_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.results == ImportJob.Results.DONE
    rows = list(ImportJobResult.objects.filter(job=job).values_list("outcome", "line"))
    assert len(rows) == len(set(rows)) == 40  # none twice, none missing
    assert (job.success_count, job.failure_count) == (35, 5)
    assert (job.results_reader, job.results_resume) == ("", [])


def test_a_slow_reader_that_was_replaced_stores_nothing_more(
    localaws: LocalAWSHandle, hi_datastore: Datastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = "s3://dicom-output/results/slow/"
    _forty_results(localaws, folder)
    job = _ended_job(hi_datastore, folder)
    monkeypatch.setattr(jobresults, "BATCH", 10)
    store = jobresults._store
    stores: list[int] = []

    def replaced_after_the_first_batch(*args: Any) -> None:
        stores.append(1)
        if len(stores) == 2:
            # Its lease ran out meanwhile and another reader claimed the job.
            ImportJob.objects.filter(pk=job.pk).update(
                results_reader=str(uuid.uuid4()),
                results_lease_until=timezone.now() + timedelta(seconds=120),
            )
        store(*args)

    monkeypatch.setattr(jobresults, "_store", replaced_after_the_first_batch)
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    assert ImportJobResult.objects.filter(job=job).count() == 10
    assert (
        job.results == ImportJob.Results.INGESTING
    )  # the other reader's, still to finish
    assert len(stores) == 2


def test_a_result_line_with_a_nul_or_a_lone_surrogate_is_stored_with_a_replacement_character(
    localaws: LocalAWSHandle, hi_datastore: Datastore
) -> None:
    folder = "s3://dicom-output/results/nul/"
    lines = [
        '{"inputFile": "in/a\\u0000b.dcm", "exception": {"exceptionType": "Bad\\u0000",'
        ' "message": "tag \\ud800 at 0x10"}}',
        json.dumps({"inputFile": "in/fine.dcm", "exception": {"message": "ok"}}),
    ]
    _write_output(
        localaws,
        folder,
        {
            "job-output-manifest.json": b'{"jobSummary": {}}',
            "FAILURE/failure.ndjson": "\n".join(lines).encode(),
        },
    )
    job = _ended_job(hi_datastore, folder)
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.results == ImportJob.Results.DONE
    assert job.failure_count == 2
    odd = ImportJobResult.objects.get(job=job, line=1)
    assert (odd.input_file, odd.exception_type, odd.message) == (
        "in/a\ufffdb.dcm",
        "Bad\ufffd",
        "tag \ufffd at 0x10",
    )
