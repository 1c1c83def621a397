"""Submission patience: transient errors are retried for a time, not a count, and an attempt that
got no answer is "outcome unknown", never "not submitted" (localaws over HTTP, and botocore's Stubber)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from django.utils import timezone

from imports.aws import client as aws
from imports.jobs import limiter
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.models import AuditEvent, Datastore, ImportJob
from localaws.testing import LocalAWSHandle
from tests.builders import make_job
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.JOBS_SUBMIT_BACKOFF_S = 0.01
    settings.JOBS_SUBMIT_BACKOFF_CAP_S = 0.02
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    with Stubber(aws.healthimaging_submit_client("us-east-1")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _again(job: ImportJob) -> float | None:
    """The next attempt, as the retry task would make it once its delay has passed."""
    ImportJob.objects.filter(pk=job.pk).update(retry_at=None)
    return jobs.job_submit(job_id=job.pk)


def _out_of_patience(job: ImportJob, settings: Any) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        first_attempt_at=timezone.now()
        - timedelta(seconds=settings.JOB_SUBMIT_PATIENCE_S + 1)
    )


def test_throttling_is_retried_for_the_patience_not_for_eight_attempts(
    stub: Stubber, datastore: Datastore, settings: Any
) -> None:
    settings.JOB_SUBMIT_PATIENCE_S = 600
    job = make_job(datastore, job_name="nightly-ct")
    for _ in range(13):
        stub.add_client_error(
            "start_dicom_import_job", service_error_code="ThrottlingException",
            http_status_code=429,
        )  # fmt: skip
    assert jobs.job_submit(job_id=job.pk) is not None
    for _ in range(11):
        assert _again(job) is not None  # 12 attempts, still within ten minutes
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert job.submit_attempts == 12
    since = f"{job.first_attempt_at:%H:%M} UTC"
    assert job.error_message.startswith(
        f"Retrying: HealthImaging is throttling (since {since}, attempt 12)."
    )
    assert "The same token is sent again" in job.error_message
    _out_of_patience(job, settings)
    assert _again(job) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.error_message.startswith(
        "HealthImaging did not accept the job after 13 attempts with the same token."
    )


@pytest.fixture
def hi_datastore(localaws: LocalAWSHandle, datastore: Datastore) -> Datastore:
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    return datastore


def _slow_answer(localaws: LocalAWSHandle, settings: Any) -> None:
    """HealthImaging answers after the client's read timeout, but still starts the job."""
    settings.JOBS_SUBMIT_READ_TIMEOUT_S = 0.3
    aws.reset_clients()
    localaws.add_fault(service="medical-imaging", latency_ms=1000)


def _aws_jobs(localaws: LocalAWSHandle, datastore: Datastore) -> list[dict[str, Any]]:
    client = localaws.hi_client()
    summaries: list[dict[str, Any]] = client.list_dicom_import_jobs(
        datastoreId=datastore.datastore_id
    )["jobSummaries"]
    return summaries


def test_an_unanswered_attempt_is_outcome_unknown_and_the_same_token_lands_on_the_same_job(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    _slow_answer(localaws, settings)
    job = make_job(
        hi_datastore, job_name="slow-ct", input_s3_uri="s3://dicom-input/in/"
    )
    assert jobs.job_submit(job_id=job.pk) is not None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING  # never "not submitted"
    assert job.outcome_unknown
    assert job.error_code == "OutcomeUnknown"
    assert "did not answer in time and may have started the job" in job.error_message
    wait_for(lambda: _aws_jobs(localaws, hi_datastore), what="the late job at AWS")
    localaws.clear_faults()
    assert _again(job) is None
    job.refresh_from_db()
    assert job.status in (ImportJob.Status.SUBMITTED, ImportJob.Status.IN_PROGRESS)
    assert [j["jobId"] for j in _aws_jobs(localaws, hi_datastore)] == [job.aws_job_id]
    tokens = {
        c["clientToken"]
        for c in localaws.calls("medical-imaging", "StartDICOMImportJob")
    }
    assert tokens == {str(job.client_token)}


def test_out_of_patience_after_an_unanswered_attempt_it_finds_the_job_it_started(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    _slow_answer(localaws, settings)
    job = make_job(
        hi_datastore, job_name="slow-ct", input_s3_uri="s3://dicom-input/in/"
    )
    assert jobs.job_submit(job_id=job.pk) is not None
    wait_for(lambda: _aws_jobs(localaws, hi_datastore), what="the late job at AWS")
    _out_of_patience(job, settings)
    # The last attempt times out too; ListDICOMImportJobs is asked before giving up.
    assert _again(job) is None
    job.refresh_from_db()
    started = _aws_jobs(localaws, hi_datastore)
    assert len(started) == 1
    assert job.status in (ImportJob.Status.SUBMITTED, ImportJob.Status.IN_PROGRESS)
    assert job.aws_job_id == started[0]["jobId"]


def test_out_of_patience_with_no_job_at_aws_it_says_the_outcome_is_unknown(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    _slow_answer(localaws, settings)
    # Another name: the reconciliation must not adopt a job it cannot tell is this one's.
    job = make_job(
        hi_datastore, job_name="slow-ct", input_s3_uri="s3://dicom-input/in/"
    )
    assert jobs.job_submit(job_id=job.pk) is not None
    wait_for(lambda: _aws_jobs(localaws, hi_datastore), what="the late job at AWS")
    ImportJob.objects.filter(pk=job.pk).update(job_name="other-name")
    _out_of_patience(job, settings)
    assert _again(job) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.aws_job_id == ""
    assert "it may have started the job" in job.error_message
    assert (
        "Check the HealthImaging console before submitting again" in job.error_message
    )


def test_the_external_sync_leaves_a_job_still_submitting_to_its_own_token(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    _slow_answer(localaws, settings)
    job = make_job(
        hi_datastore, job_name="slow-ct", input_s3_uri="s3://dicom-input/in/"
    )
    assert jobs.job_submit(job_id=job.pk) is not None
    wait_for(lambda: _aws_jobs(localaws, hi_datastore), what="the late job at AWS")
    localaws.clear_faults()
    # Someone else's job, started in the console meanwhile, is still found.
    localaws.start_import(
        hi_datastore.datastore_id, "s3://dicom-input/other/", "s3://dicom-output/x/",
        jobName="console-job",
    )  # fmt: skip
    assert jobtracking.jobs_sync_external() == 1
    assert ImportJob.objects.filter(external=True).get().job_name == "console-job"
    assert _again(job) is None
    job.refresh_from_db()
    assert job.aws_job_id
    assert ImportJob.objects.filter(aws_job_id=job.aws_job_id).count() == 1
    assert jobtracking.jobs_sync_external() == 0


def test_adopting_an_external_twin_is_audited_with_the_row_it_absorbed(
    localaws: LocalAWSHandle, hi_datastore: Datastore, settings: Any
) -> None:
    _slow_answer(localaws, settings)
    job = make_job(
        hi_datastore, job_name="slow-ct", input_s3_uri="s3://dicom-input/in/"
    )
    assert jobs.job_submit(job_id=job.pk) is not None
    wait_for(lambda: _aws_jobs(localaws, hi_datastore), what="the late job at AWS")
    aws_job_id = _aws_jobs(localaws, hi_datastore)[0]["jobId"]
    # As an older sync would have recorded it (before it knew to leave it alone).
    twin = ImportJob.objects.create(
        datastore=hi_datastore, external=True, aws_job_id=aws_job_id, job_name="slow-ct",
        status=ImportJob.Status.SUBMITTED,
    )  # fmt: skip
    localaws.clear_faults()
    assert _again(job) is None
    job.refresh_from_db()
    assert job.aws_job_id == aws_job_id
    assert not ImportJob.objects.filter(pk=twin.pk).exists()
    adopted = AuditEvent.objects.get(action=AuditEvent.Action.JOB_ADOPTED)
    assert adopted.target_id == str(job.pk)
    assert adopted.details == {"absorbed_job": twin.pk, "aws_job_id": aws_job_id}
