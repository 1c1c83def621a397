"""Confirming and submitting import jobs: exactly once, the exact parameters, plain words for AWS errors."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from django.contrib.auth.models import User
from django.utils import timezone

from imports.aws import client as aws
from imports.enqueue import JOB_SUBMIT
from imports.jobs import limiter
from imports.jobs import request as jobrequest
from imports.jobs import submit as jobs
from imports.jobs.derived import SameRequest
from imports.mappings.rules import Mapping
from imports.models import AuditEvent, Datastore, ImportJob, RateLimit
from localaws.testing import LocalAWSHandle
from tests.builders import make_job

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = STUDY + ".1"


@pytest.fixture(autouse=True)
def _fast_limiter() -> None:
    # Slots under a name of this test's own, so tests never wait for each other's slots (the datastores of
    # tests/conftest.py and tests/builders.py take 40 a second, so one test's submissions wait 25 ms at most).
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"


def _request(datastore: Datastore, **overrides: Any) -> dict[str, Any]:
    return jobrequest.job_request_build(
        datastore=datastore,
        job_name="nightly-ct",
        mappings=[
            Mapping(STUDY, "", "metadata/study.json"),
            Mapping(STUDY, SERIES, "metadata/series.json"),
        ],
        **overrides,
    )


def _create(
    datastore: Datastore, actor: User | None = None, key: str | None = None
) -> ImportJob:
    return make_job(datastore, actor=actor, key=key, request=_request(datastore))


# --- job_create -----------------------------------------------------------------------------


def test_confirming_stores_the_exact_request_a_token_and_an_audit_event_and_enqueues_on_commit(
    alice: User, datastore: Datastore, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = _create(datastore, alice)
    assert len(callbacks) == 1
    assert job.status == ImportJob.Status.PENDING
    assert job.request == {
        "datastoreId": datastore.datastore_id,
        "dataAccessRoleArn": datastore.role_arn,
        "inputS3Uri": datastore.input_s3_uri,
        "outputS3Uri": datastore.output_s3_uri,
        "jobName": "nightly-ct",
        "importConfiguration": {
            "dicomJsonMetadataImportConfiguration": {
                "dicomMetadataMappings": [
                    {
                        "studyInstanceUID": STUDY,
                        "metadataFilePath": "metadata/study.json",
                    },
                    {
                        "studyInstanceUID": STUDY,
                        "seriesInstanceUID": SERIES,
                        "metadataFilePath": "metadata/series.json",
                    },
                ]
            }
        },
    }
    assert str(uuid.UUID(job.client_token)) == job.client_token
    event = AuditEvent.objects.get(action=AuditEvent.Action.JOB_CREATED)
    assert event.actor == alice
    assert event.details["sha256"] == jobrequest.request_sha256(
        job.request, job.client_token
    )
    # Mappings name studies: no UID reaches the audit trail.
    assert STUDY not in str(event.details) + event.summary


def test_a_double_post_with_the_same_key_makes_one_job(
    alice: User, datastore: Datastore, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = _create(datastore, alice, key="form-key-1")
        second = _create(datastore, alice, key="form-key-1")
    assert first.pk == second.pk
    assert ImportJob.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.JOB_CREATED).count() == 1
    assert len(callbacks) == 1


def test_two_confirmations_get_two_different_tokens(datastore: Datastore) -> None:
    assert _create(datastore).client_token != _create(datastore).client_token


def test_the_same_request_again_needs_import_again(datastore: Datastore) -> None:
    first = make_job(datastore, request=_request(datastore), import_again=False)
    with pytest.raises(SameRequest) as caught:
        make_job(datastore, request=_request(datastore), import_again=False)
    assert caught.value.job == first
    assert ImportJob.objects.count() == 1
    # The job name and the output prefix do not make it another import; the input does.
    renamed = {**_request(datastore), "jobName": "other-name"}
    with pytest.raises(SameRequest):
        make_job(datastore, request=renamed, import_again=False)
    elsewhere = {**_request(datastore), "inputS3Uri": datastore.input_s3_uri + "other/"}
    make_job(datastore, request=elsewhere, import_again=False)
    again = make_job(datastore, request=_request(datastore), import_again=True)
    event = AuditEvent.objects.get(
        action=AuditEvent.Action.JOB_CREATED, target_id=str(again.pk)
    )
    assert event.details["import_again_of"] == first.pk


def test_a_request_of_the_wrong_shape_is_refused_and_nothing_is_stored(
    datastore: Datastore,
) -> None:
    request = _request(datastore)
    request["clientToken"] = "mine"
    request["datastoreId"] = "f" * 32
    del request["dataAccessRoleArn"]
    with pytest.raises(jobrequest.InvalidJobRequest) as caught:
        jobs.job_create(
            actor=None,
            draft=None,
            datastore=datastore,
            request=request,
            idempotency_key="k",
        )
    assert caught.value.problems == [
        "Unknown parameter “clientToken”.",
        "“dataAccessRoleArn” is missing.",
        f"datastoreId {'f' * 32} is not the datastore's ({datastore.datastore_id}).",
    ]
    assert not ImportJob.objects.exists()


def test_the_request_leaves_out_optional_members_rather_than_sending_them_empty(
    datastore: Datastore,
) -> None:
    request = jobrequest.job_request_build(datastore=datastore)
    assert set(request) == {
        "datastoreId",
        "dataAccessRoleArn",
        "inputS3Uri",
        "outputS3Uri",
    }
    datastore.input_owner_account_id = "210987654321"
    assert (
        jobrequest.job_request_build(datastore=datastore)["inputOwnerAccountId"]
        == "210987654321"
    )


# --- Submitting: exact parameters (Stubber) -------------------------------------------------


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    with Stubber(aws.healthimaging_submit_client("us-east-1")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _started(job_id: str = "a" * 32) -> dict[str, Any]:
    return {
        "datastoreId": "0123456789abcdef0123456789abcdef",
        "jobId": job_id,
        "jobStatus": "SUBMITTED",
        "submittedAt": timezone.now(),
    }


def test_submitting_sends_exactly_the_stored_request_with_the_stored_token(
    stub: Stubber, datastore: Datastore
) -> None:
    job = _create(datastore)
    stub.add_response(
        "start_dicom_import_job",
        _started(),
        expected_params={
            "jobName": "nightly-ct",
            "dataAccessRoleArn": "arn:aws:iam::123456789012:role/HealthImagingImportRole",
            "clientToken": job.client_token,
            "datastoreId": "0123456789abcdef0123456789abcdef",
            "inputS3Uri": "s3://dicom-input/incoming/",
            "outputS3Uri": "s3://dicom-output/results/",
            "importConfiguration": {
                "dicomJsonMetadataImportConfiguration": {
                    "dicomMetadataMappings": [
                        {
                            "studyInstanceUID": STUDY,
                            "metadataFilePath": "metadata/study.json",
                        },
                        {
                            "studyInstanceUID": STUDY,
                            "seriesInstanceUID": SERIES,
                            "metadataFilePath": "metadata/series.json",
                        },
                    ]
                }
            },
        },
    )
    assert jobs.job_submit(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMITTED
    assert job.aws_job_id == "a" * 32
    assert job.submitted_at is not None
    assert job.submit_attempts == 1
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.JOB_STATUS_CHANGED, target_id=str(job.pk)
    ).exists()


def test_a_duplicate_delivery_does_nothing_once_the_job_is_claimed(
    stub: Stubber, datastore: Datastore
) -> None:
    job = _create(datastore)
    stub.add_response("start_dicom_import_job", _started())
    jobs.job_submit(job_id=job.pk)
    # No second response is stubbed: a second StartDICOMImportJob call would fail the test.
    assert jobs.job_submit(job_id=job.pk) is None
    assert jobs.job_submit(job_id=123456789) is None


def test_a_throttled_submission_is_retried_later_with_the_same_token(
    stub: Stubber, datastore: Datastore
) -> None:
    job = _create(datastore)
    params = {**job.request, "clientToken": job.client_token}
    stub.add_client_error(
        "start_dicom_import_job",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=429,
        expected_params=params,
    )
    stub.add_client_error(
        "start_dicom_import_job",
        service_error_code="InternalServerException",
        http_status_code=500,
        expected_params=params,
    )
    stub.add_response("start_dicom_import_job", _started(), expected_params=params)

    delay = jobs.job_submit(job_id=job.pk)
    job.refresh_from_db()
    assert delay is not None
    assert delay > 0
    assert job.status == ImportJob.Status.PENDING
    assert job.retry_at is not None
    assert job.retry_at > timezone.now()
    assert job.error_code == "ThrottlingException"
    assert "same token" in job.error_message
    # An early duplicate of the delayed retry does not jump the backoff.
    ImportJob.objects.filter(pk=job.pk).update(
        retry_at=timezone.now() + timedelta(seconds=30)
    )
    assert jobs.job_submit(job_id=job.pk) is None
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.PENDING

    ImportJob.objects.filter(pk=job.pk).update(retry_at=None)
    second = jobs.job_submit(job_id=job.pk)
    assert second is not None
    ImportJob.objects.filter(pk=job.pk).update(retry_at=None)
    assert jobs.job_submit(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMITTED
    assert job.submit_attempts == 3
    assert job.error_message == ""


def test_transient_errors_end_the_job_after_the_last_attempt(
    stub: Stubber, datastore: Datastore, settings: Any
) -> None:
    settings.JOBS_SUBMIT_MAX_ATTEMPTS = 2
    job = _create(datastore)
    for _ in range(2):
        stub.add_client_error(
            "start_dicom_import_job",
            service_error_code="ThrottlingException",
            http_status_code=429,
        )
    assert jobs.job_submit(job_id=job.pk) is not None
    ImportJob.objects.filter(pk=job.pk).update(retry_at=None)
    assert jobs.job_submit(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.error_code == "ThrottlingException"
    assert job.error_message.startswith(
        "HealthImaging did not accept the job after 2 attempts with the same token."
    )


def test_backoff_grows_exponentially_with_jitter_and_is_capped(settings: Any) -> None:
    settings.JOBS_SUBMIT_BACKOFF_S = 1.0
    settings.JOBS_SUBMIT_BACKOFF_CAP_S = 8.0
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 8)):
        delays = [jobs.backoff_s(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len({jobs.backoff_s(3) for _ in range(20)}) > 1


# --- Permanent errors, against localaws over HTTP --------------------------------------------

PERMANENT = [
    ("ValidationException", "HealthImaging refused the request as invalid."),
    ("AccessDeniedException", "HealthImaging cannot assume the data access role"),
    ("ConflictException", "the datastore is not ACTIVE"),
    ("ResourceNotFoundException", "HealthImaging has no such datastore"),
    ("ServiceQuotaExceededException", "concurrent import quota"),
]


@pytest.mark.parametrize(("code", "words"), PERMANENT)
def test_each_permanent_error_ends_in_submit_failed_with_aws_code_and_plain_words(
    localaws: LocalAWSHandle, datastore: Datastore, code: str, words: str
) -> None:
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    localaws.add_fault(
        service="medical-imaging",
        operation="StartDICOMImportJob",
        error=code,
        message="Injected by the test",
    )
    job = _create(datastore)
    assert jobs.job_submit(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.error_code == code
    assert words in job.error_message
    assert "Injected by the test" in job.error_message
    assert job.aws_job_id == ""
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 1


def test_a_real_validation_error_from_localaws_is_shown_in_plain_words(
    localaws: LocalAWSHandle, datastore: Datastore
) -> None:
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    job = _create(datastore)
    # A jobName with a space passes the shape check here but not HealthImaging's pattern.
    ImportJob.objects.filter(pk=job.pk).update(
        request={**job.request, "jobName": "bad name"}
    )
    jobs.job_submit(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUBMIT_FAILED
    assert job.error_code == "ValidationException"
    assert "jobName" in job.error_message


# --- The shared limiter ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_the_limiter_gives_one_slot_per_interval(
    backend: str, settings: Any, transactional_db: None
) -> None:
    if backend == "redis":
        if not str(settings.CELERY_BROKER_URL).startswith("redis"):
            pytest.skip("no Redis broker configured")
        settings.JOBS_LIMITER_URL = settings.CELERY_BROKER_URL
    else:
        settings.JOBS_LIMITER_URL = ""
    name = f"tests.{uuid.uuid4().hex}"
    assert limiter.try_acquire(name, 30) == 0
    wait = limiter.try_acquire(name, 30)
    assert 25 < wait <= 30
    other = f"tests.{uuid.uuid4().hex}"
    assert limiter.try_acquire(other, 30) == 0
    assert not limiter.acquire(name, 30, timeout_s=0.05)


def _limiter_in_database(settings: Any) -> None:
    settings.JOBS_LIMITER_URL = ""


@pytest.mark.parametrize(
    ("rate", "interval"), [(1.0, 1.0), (4.0, 0.25), (0.1, 10.0), (40.0, 0.025)]
)
def test_a_datastores_slot_frees_after_one_interval_of_its_own_rate(
    datastore: Datastore, settings: Any, rate: float, interval: float
) -> None:
    _limiter_in_database(settings)
    datastore.start_jobs_per_second = rate
    slot, interval_s = limiter.start_import_slot(datastore)
    assert interval_s == pytest.approx(interval)
    t0 = timezone.now()
    assert limiter.try_acquire(slot, interval_s, now=t0) == 0
    # The clock stands still between calls: the wait is what the limiter computed, not a measurement.
    assert limiter.try_acquire(slot, interval_s, now=t0) == pytest.approx(interval)
    half = timedelta(seconds=interval / 2)
    assert limiter.try_acquire(slot, interval_s, now=t0 + half) == pytest.approx(
        interval / 2
    )
    assert limiter.try_acquire(slot, interval_s, now=t0 + 2 * half) == 0
    assert RateLimit.objects.get(name=slot).next_at == t0 + 2 * half + timedelta(
        seconds=interval
    )


def test_each_datastore_has_a_slot_of_its_own(
    datastore: Datastore, settings: Any
) -> None:
    _limiter_in_database(settings)
    other = Datastore.objects.create(
        name="Cardiology",
        region="us-east-1",
        datastore_id="f" * 32,
        role_arn=datastore.role_arn,
        input_s3_uri=datastore.input_s3_uri,
        output_s3_uri=datastore.output_s3_uri,
    )
    assert (
        other.start_jobs_per_second == 1
    )  # the default: AWS's older page, 1 per second
    t0 = timezone.now()
    slot, interval_s = limiter.start_import_slot(datastore)
    other_slot, other_interval_s = limiter.start_import_slot(other)
    assert slot != other_slot
    assert limiter.try_acquire(slot, interval_s, now=t0) == 0
    assert limiter.try_acquire(other_slot, other_interval_s, now=t0) == 0
    assert limiter.try_acquire(other_slot, other_interval_s, now=t0) == pytest.approx(
        1.0
    )


def test_a_submission_waits_for_its_datastores_slot_and_goes_back_in_line_by_its_rate(
    datastore: Datastore, settings: Any
) -> None:
    # No AWS call is made (no stub): the slot is taken, and the job waits one interval of its datastore's rate.
    settings.JOBS_LIMITER_WAIT_S = 0
    datastore.start_jobs_per_second = 0.1
    datastore.save()
    job = _create(datastore)
    slot, interval_s = limiter.start_import_slot(datastore)
    assert interval_s == pytest.approx(10.0)
    assert limiter.try_acquire(slot, interval_s) == 0
    delay = jobs.job_submit(job_id=job.pk)
    assert delay is not None
    assert 10.0 <= delay < 11.0  # the interval, plus up to 1 s of jitter
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert job.submit_attempts == 0  # waiting for the slot spends no attempt
    assert job.retry_at is not None


def test_a_submission_takes_its_datastores_slot_for_one_interval(
    stub: Stubber, datastore: Datastore
) -> None:
    datastore.start_jobs_per_second = 0.1
    datastore.save()
    job = _create(datastore)
    stub.add_response("start_dicom_import_job", _started())
    assert jobs.job_submit(job_id=job.pk) is None
    slot, interval_s = limiter.start_import_slot(datastore)
    # The submission took the slot for 10 s (the wait left is bounded, as in the limiter test above).
    assert 5 < limiter.try_acquire(slot, interval_s) <= 10


# --- The quota queue ------------------------------------------------------------------------


def test_jobs_past_the_datastore_quota_wait_in_line_and_go_when_a_slot_frees(
    stub: Stubber,
    datastore: Datastore,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    datastore.max_concurrent_jobs = 1
    datastore.save()
    first, second, third = _create(datastore), _create(datastore), _create(datastore)
    stub.add_response("start_dicom_import_job", _started("1" * 32))
    jobs.job_submit(job_id=first.pk)
    # The quota is used: the others stay queued, in order.
    assert jobs.job_submit(job_id=third.pk) is None
    assert jobs.job_submit(job_id=second.pk) is None
    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, third.status) == (ImportJob.Status.PENDING,) * 2
    assert (jobs.queue_position(second), jobs.queue_position(third)) == (1, 2)

    ImportJob.objects.filter(pk=first.pk).update(status=ImportJob.Status.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.jobs_release_queued(datastore_id=datastore.pk) == [second.pk]
    assert sent_tasks == [(JOB_SUBMIT, second.pk)]
    # The third job cannot overtake the second.
    assert jobs.job_submit(job_id=third.pk) is None
    stub.add_response("start_dicom_import_job", _started("2" * 32))
    jobs.job_submit(job_id=second.pk)
    assert ImportJob.objects.get(pk=second.pk).status == ImportJob.Status.SUBMITTED


# --- Beat: nothing is lost ------------------------------------------------------------------


def test_beat_requeues_old_pending_jobs_and_jobs_whose_worker_was_lost(
    datastore: Datastore,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    fresh, old, backing_off, lost, running = (_create(datastore) for _ in range(5))
    minutes_ago = timezone.now() - timedelta(minutes=2)
    ImportJob.objects.filter(pk__in=[old.pk, backing_off.pk]).update(
        created_at=minutes_ago
    )
    ImportJob.objects.filter(pk=backing_off.pk).update(
        retry_at=timezone.now() + timedelta(minutes=1)
    )
    ImportJob.objects.filter(pk=lost.pk).update(
        status=ImportJob.Status.SUBMITTING,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    ImportJob.objects.filter(pk=running.pk).update(
        status=ImportJob.Status.SUBMITTING,
        lease_until=timezone.now() + timedelta(minutes=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert sorted(jobs.jobs_requeue_pending()) == sorted([old.pk, lost.pk])
    enqueued = [pk for name, pk in sent_tasks if name == JOB_SUBMIT]
    assert sorted(enqueued) == sorted([old.pk, lost.pk])
    assert ImportJob.objects.get(pk=lost.pk).status == ImportJob.Status.PENDING
    assert ImportJob.objects.get(pk=running.pk).status == ImportJob.Status.SUBMITTING
    assert fresh.pk not in enqueued


def test_with_the_broker_down_confirming_still_stores_the_job(
    datastore: Datastore, broker_down: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = _create(datastore)
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.PENDING
