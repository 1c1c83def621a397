"""The poller during a brown-out: one poll at a time, a bounded client, and a run that stops when AWS is away."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from imports.jobs import leases, limiter
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.models import Datastore, ImportJob, TaskLease
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import make_job

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.7"
SERIES = STUDY + ".1"


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"


@pytest.fixture
def running(
    localaws: LocalAWSHandle, datastore: Datastore, settings: Any
) -> list[ImportJob]:
    """Five jobs at AWS, all due for a poll."""
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    settings.JOBS_POLL_FIRST_S = 60
    localaws.configure(job_submitted_delay_s=60)
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    created = [make_job(datastore) for _ in range(5)]
    for job in created:
        jobs.job_submit(job_id=job.pk)
    ImportJob.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    localaws.clear_calls()
    return created


def _gets(localaws: LocalAWSHandle) -> int:
    return len(localaws.calls("medical-imaging", "GetDICOMImportJob"))


def test_a_poll_finds_another_poll_running_and_asks_nothing(
    localaws: LocalAWSHandle, running: list[ImportJob]
) -> None:
    with leases.lease_held(jobtracking.POLL_LEASE, seconds=60) as held:
        assert held
        assert jobtracking.jobs_poll() == 0
        assert _gets(localaws) == 0
    # Given back on the way out: the next poll runs.
    assert jobtracking.jobs_poll() == 5
    assert _gets(localaws) == 5


def test_a_poll_killed_with_the_lease_is_replaced_once_it_runs_out(
    localaws: LocalAWSHandle, running: list[ImportJob]
) -> None:
    TaskLease.objects.create(
        name=jobtracking.POLL_LEASE,
        holder="killed",
        until=timezone.now() + timedelta(seconds=60),
    )
    assert jobtracking.jobs_poll() == 0
    TaskLease.objects.filter(name=jobtracking.POLL_LEASE).update(
        until=timezone.now() - timedelta(seconds=1)
    )
    assert jobtracking.jobs_poll() == 5


def test_a_poll_stops_after_failures_in_a_row_and_leaves_the_rest_due(
    localaws: LocalAWSHandle, running: list[ImportJob], settings: Any
) -> None:
    settings.JOBS_POLL_ATTEMPTS = 1
    settings.JOBS_POLL_FAILURES_TO_STOP = 3
    localaws.add_fault(
        service="medical-imaging",
        operation="GetDICOMImportJob",
        error="InternalServerException",
        rate=1.0,
    )
    assert jobtracking.jobs_poll() == 3
    assert _gets(localaws) == 3
    # The two it did not ask about are still due for the next poll.
    now = timezone.now()
    assert ImportJob.objects.filter(next_poll_at__lte=now).count() == 2


def test_a_poll_call_tries_as_often_as_the_poll_client_allows(
    localaws: LocalAWSHandle, running: list[ImportJob], settings: Any
) -> None:
    settings.JOBS_POLL_ATTEMPTS = 2
    settings.JOBS_POLL_FAILURES_TO_STOP = 1
    localaws.add_fault(
        service="medical-imaging",
        operation="GetDICOMImportJob",
        error="InternalServerException",
        rate=1.0,
    )
    assert jobtracking.jobs_poll() == 1
    # One job asked, with the poll client's two attempts (not AWS_MAX_ATTEMPTS, the other calls' setting).
    assert _gets(localaws) == 2
    settings.JOBS_POLL_ATTEMPTS = 3
    TaskLease.objects.all().delete()
    localaws.clear_calls()
    jobtracking.jobs_poll()
    assert _gets(localaws) == 3


def test_a_failure_that_is_not_aws_being_away_does_not_stop_the_poll(
    localaws: LocalAWSHandle, running: list[ImportJob], settings: Any
) -> None:
    settings.JOBS_POLL_ATTEMPTS = 1
    settings.JOBS_POLL_FAILURES_TO_STOP = 2
    localaws.add_fault(
        service="medical-imaging",
        operation="GetDICOMImportJob",
        error="ResourceNotFoundException",
        rate=1.0,
    )
    assert jobtracking.jobs_poll() == 5


def test_a_spent_time_budget_asks_nothing_more(
    localaws: LocalAWSHandle, running: list[ImportJob], settings: Any
) -> None:
    settings.JOBS_POLL_TIME_BUDGET_S = -1  # spent before the first call
    assert jobtracking.jobs_poll() == 0
    assert ImportJob.objects.filter(next_poll_at__lte=timezone.now()).count() == 5


def test_submission_polling_and_scanning_go_to_queues_of_their_own() -> None:
    router = current_app.amqp.router

    def queue_of(task: str) -> str:
        return str(router.route({}, task)["queue"].name)

    assert queue_of("imports.job_submit") == "submit"
    assert queue_of("imports.jobs_poll") == "poll"
    assert queue_of("imports.job_ingest_results") == "poll"
    assert queue_of("imports.scan_prefix") == "scan"
    assert queue_of("imports.beat_heartbeat") == "default"
