"""End to end: jobs submitted and tracked by a real Celery worker against localaws, through the broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from config.celery import app as celery_app
from imports import tasks
from imports.jobs import submit as jobs
from imports.models import Datastore, ImportJob, ImportJobResult
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import make_job
from tests.conftest import WorkerProcess, wait_for

# Transactional: the worker process must see the rows this test commits.
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STUDY = "1.2.826.0.1.3680043.8.498.31"
SERIES = STUDY + ".1"


@pytest.fixture
def hi_datastore(localaws: LocalAWSHandle, datastore: Datastore) -> Datastore:
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    return datastore


def _confirm(datastore: Datastore, actor: User | None, prefix: str) -> ImportJob:
    return make_job(datastore, actor=actor, input_s3_uri=f"s3://dicom-input/{prefix}")


def _wait(
    job: ImportJob,
    worker: WorkerProcess,
    done: Callable[[ImportJob], bool],
    what: str,
    timeout: float = 60,
) -> None:
    """Wait while beat's poller runs (sent to the worker here, as beat would)."""

    def check() -> bool:
        tasks.jobs_poll.delay()
        job.refresh_from_db()
        return done(job)

    try:
        wait_for(check, timeout=timeout, interval=0.5, what=what)
    except BaseException:
        log = "\n".join(
            line for line in worker.output().splitlines() if "jobs_poll" not in line
        )
        print(f"Job: {job.status} {job.results} {job.error_code} {job.error_message}")
        print(f"The worker's log:\n{log[-4000:]}")
        raise


def _finished(job: ImportJob) -> bool:
    return job.has_ended and job.results == ImportJob.Results.DONE


def test_a_job_is_submitted_completes_and_its_results_are_stored(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
    alice: User,
) -> None:
    for i in range(2):
        localaws.put(
            f"s3://dicom-input/a/{i}.dcm",
            dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i),
        )
    localaws.put("s3://dicom-input/a/readme.txt", b"not dicom")
    job = _confirm(hi_datastore, alice, "a/")
    _wait(job, celery_worker_process, _finished, "the job to complete")
    assert job.status == ImportJob.Status.COMPLETED
    assert job.display_status == "Completed with errors"
    assert (job.success_count, job.failure_count) == (2, 1)
    assert job.scanned_files == 3
    assert ImportJobResult.objects.filter(job=job).count() == 3
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 1
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).notified_at is not None,
        what="the worker to email the submitter",
    )

    # The same series again with another patient ID: a non-primary image set.
    localaws.put(
        "s3://dicom-input/b/0.dcm",
        dicom_bytes(study=STUDY, series=SERIES, PatientID="SOMEONE-ELSE"),
    )
    second = _confirm(hi_datastore, alice, "b/")
    _wait(second, celery_worker_process, _finished, "the second job to complete")
    assert second.display_status == "Completed"
    assert second.non_primary_count == 1


def test_throttling_is_retried_with_the_same_token_and_makes_one_aws_job(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
) -> None:
    localaws.put("s3://dicom-input/a/0.dcm", dicom_bytes(study=STUDY, series=SERIES))
    localaws.add_fault(
        service="medical-imaging",
        operation="StartDICOMImportJob",
        error="ThrottlingException",
        count=3,
    )
    job = _confirm(hi_datastore, None, "a/")
    _wait(
        job,
        celery_worker_process,
        lambda j: bool(j.aws_job_id),
        "the job to be submitted",
    )
    calls = localaws.calls("medical-imaging", "StartDICOMImportJob")
    assert [c["status"] for c in calls] == [429, 429, 429, 200]
    assert calls[-1]["clientToken"] == job.client_token
    assert job.submit_attempts == 4
    listed = localaws.hi_client().list_dicom_import_jobs(
        datastoreId=hi_datastore.datastore_id
    )
    assert [s["jobId"] for s in listed["jobSummaries"]] == [job.aws_job_id]


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing after the AWS call runs, no except clause catches it."""


def test_a_worker_killed_after_the_aws_call_leaves_one_aws_job_recorded_correctly(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
) -> None:
    localaws.put("s3://dicom-input/a/0.dcm", dicom_bytes(study=STUDY, series=SERIES))

    # This process plays the worker that dies between StartDICOMImportJob and the database update.
    def die(*args: object, **kwargs: object) -> None:
        raise WorkerKilled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks.job_submit, "delay", lambda job_id: None)
        job = _confirm(hi_datastore, None, "a/")
        patch.setattr(jobs, "_record_submitted", die)
        with pytest.raises(WorkerKilled):
            jobs.job_submit(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMITTING
    (first,) = localaws.calls("medical-imaging", "StartDICOMImportJob")

    # Its lease runs out; beat's requeue hands the job to the real worker.
    ImportJob.objects.filter(pk=job.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    tasks.jobs_requeue_pending.delay()
    _wait(
        job, celery_worker_process, _finished, "the job to be recovered and completed"
    )
    calls = localaws.calls("medical-imaging", "StartDICOMImportJob")
    assert len(calls) == 2
    assert {c["clientToken"] for c in calls} == {job.client_token}
    assert {c["jobId"] for c in calls} == {first["jobId"]}
    assert job.aws_job_id == first["jobId"]
    assert job.status == ImportJob.Status.COMPLETED
    listed = localaws.hi_client().list_dicom_import_jobs(
        datastoreId=hi_datastore.datastore_id
    )
    assert len(listed["jobSummaries"]) == 1


def test_with_the_broker_down_at_confirm_the_job_waits_and_proceeds_once_it_is_back(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
    client_alice: Client,
) -> None:
    localaws.put("s3://dicom-input/a/0.dcm", dicom_bytes(study=STUDY, series=SERIES))

    def broker_down(name: str, args: tuple[int]) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(celery_app, "send_task", broker_down)
        job = _confirm(hi_datastore, None, "a/")
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert (
        "Waiting for a worker" in client_alice.get(f"/jobs/{job.pk}/").content.decode()
    )
    assert not localaws.calls("medical-imaging", "StartDICOMImportJob")

    # A minute later, with the broker back, beat's requeue finds it.
    ImportJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    tasks.jobs_requeue_pending.delay()
    _wait(job, celery_worker_process, _finished, "the job to proceed")
    assert job.status == ImportJob.Status.COMPLETED
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 1


def test_a_manifest_that_appears_late_is_still_read(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
) -> None:
    localaws.put("s3://dicom-input/a/0.dcm", dicom_bytes(study=STUDY, series=SERIES))
    localaws.add_fault(manifest_delay_s=7)
    job = _confirm(hi_datastore, None, "a/")
    _wait(job, celery_worker_process, _finished, "the results to be read", timeout=90)
    assert job.results_error == ""
    assert job.scanned_files == 1
    assert job.imported_files == 1
    manifest_reads = [
        c for c in localaws.calls("s3", "GetObject") if c["status"] == 404
    ]
    assert manifest_reads  # NoSuchKey at least once before it appeared


def test_a_permanent_error_is_shown_in_plain_words_on_the_job_page(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    hi_datastore: Datastore,
    client_bob: Client,
) -> None:
    localaws.add_fault(
        service="medical-imaging",
        operation="StartDICOMImportJob",
        error="AccessDeniedException",
        message="User is not authorized to perform iam:PassRole",
    )
    job = _confirm(hi_datastore, None, "a/")
    _wait(job, celery_worker_process, lambda j: j.has_ended, "the job to fail")
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.error_code == "AccessDeniedException"
    response = client_bob.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "HealthImaging cannot assume the data access role" in html
    assert "iam:PassRole" in html
    assert "Not submitted" in html
