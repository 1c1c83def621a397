"""Know before, prove after (issue 18's second half), against localaws over HTTP: `import_job submit` records the
prediction; once a real job's results are read, its verification reads every image set's metadata, compares the
overrides at their level and the prediction with what happened; faults retry within the budget, then "not verified
yet"; `status --json` reports both."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command

from imports.jobs import limiter, verification
from imports.jobs import results as jobresults
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.models import AuditEvent, Datastore, ImportJob
from localaws.testing import LocalAWSHandle
from tests.builders import (
    SERIES_A1,
    SERIES_A2,
    SERIES_B1,
    SERIES_FILE,
    STUDY_A,
    STUDY_FILE,
    make_localaws_datastore,
    seed_prefix,
    stored_before,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings: Any, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


@pytest.fixture
def store(db: None, localaws: LocalAWSHandle) -> Datastore:
    cache.clear()
    seed_prefix(localaws)
    return make_localaws_datastore(localaws)


def submit(tmp_path: Path, rows: list[str]) -> ImportJob:
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n" + "\n".join(rows) + "\n"
    )
    out = io.StringIO()
    call_command(
        "import_job", "submit", "--datastore", "Composer tests", "--mappings", str(csv_file),
        "--accept-warnings", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    return ImportJob.objects.get(pk=int(out.getvalue().splitlines()[-1]))


def run_to_results(job: ImportJob) -> ImportJob:
    """What the worker and beat do up to the results: submit, poll until it ended, read the results."""
    assert jobs.job_submit(job_id=job.pk) is None

    def ended() -> bool:
        jobtracking.jobs_poll()
        job.refresh_from_db()
        return job.has_ended

    wait_for(ended, timeout=20, what="the job to end")
    assert jobresults.job_ingest_results(job_id=job.pk) is None
    job.refresh_from_db()
    return job


def verify(job: ImportJob) -> ImportJob:
    assert verification.job_verify(job_id=job.pk) is None
    job.refresh_from_db()
    return job


def status_json(job: ImportJob) -> dict[str, Any]:
    out = io.StringIO()
    call_command("import_job", "status", str(job.pk), "--json", stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def series_prediction(job: ImportJob, series: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(
        s for s in job.prediction["series"] if s["series_instance_uid"] == series
    )
    return entry


def test_submit_records_each_outcome_with_the_job_and_the_verification_observes_them(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    # A1 stored alike (adds to), A2 stored with another PatientID (non-primary), B1 never stored (new).
    stored_before(
        localaws,
        store,
        A1={"StudyDescription": "CT CHEST W CONTRAST"},
        A2={"PatientID": "PAT-OTHER"},
    )
    before = {s["seriesInstanceUID"]: s for s in localaws.image_sets()}
    job = submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert (
        job.prediction["new"],
        job.prediction["adds_to"],
        job.prediction["non_primary"],
    ) == (1, 1, 1)
    assert series_prediction(job, SERIES_B1)["outcome"] == "new"
    a1 = series_prediction(job, SERIES_A1)
    assert (a1["outcome"], a1["image_set_id"], a1["image_set_version"]) == (
        "adds_to",
        before[SERIES_A1]["imageSetId"],
        1,
    )
    assert series_prediction(job, SERIES_A2)["outcome"] == "non_primary"
    assert series_prediction(job, SERIES_A2)["differs"] == ["PatientID"]
    # The trail holds the counts, never the series (PHI-adjacent).
    created = AuditEvent.objects.get(
        action=AuditEvent.Action.JOB_CREATED, target_id=str(job.pk)
    )
    assert created.details["prediction"]["non_primary"] == 1
    assert STUDY_A not in json.dumps(created.details)

    job = run_to_results(job)
    assert job.verification == ImportJob.Verification.PENDING
    assert status_json(job)["verification"]["state"] == "pending"
    job = verify(job)
    assert job.verification == ImportJob.Verification.VERIFIED, job.verification_detail
    assert job.prediction_confirmed is True
    assert job.verification_detail["wrong_predictions"] == []
    assert job.verification_detail["predictions_compared"] == 3
    # The study file sets StudyDescription on the two series of study A, each in its own image set.
    assert job.verification_detail["image_sets"] == 3
    assert job.verification_detail["attributes_checked"] == 2
    status = status_json(job)
    assert status["prediction"] == {
        "new": 1,
        "adds_to": 1,
        "non_primary": 1,
        "confirmed": True,
    }
    assert status["verification"] == {
        "state": "verified",
        "image_sets": 3,
        "attributes_checked": 2,
        "mismatches": 0,
    }
    assert verification.verification_sentence(job) == (
        "Overrides verified: 2 of 2 attributes in 3 image sets"
    )
    assert job.record["signature"]["algorithm"] == "HMAC-SHA256"


def test_a_wrong_prediction_is_recorded_and_not_confirmed(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    stored_before(localaws, store, A1={"StudyDescription": "CT CHEST W CONTRAST"})
    job = submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert series_prediction(job, SERIES_A1)["outcome"] == "adds_to"
    # Someone changes the stored PatientID of A1's image set between the prediction and the job: A1 now forks.
    a1 = next(s for s in localaws.image_sets() if s["seriesInstanceUID"] == SERIES_A1)
    localaws.change_metadata(a1["imageSetId"], "00100020", "LO", "PAT-CHANGED")
    job = verify(run_to_results(job))
    assert job.prediction_confirmed is False
    [wrong] = job.verification_detail["wrong_predictions"]
    assert (wrong["series_instance_uid"], wrong["predicted"], wrong["observed"]) == (
        SERIES_A1,
        "adds_to",
        "non_primary",
    )
    assert wrong["is_primary"] is False
    assert wrong["predicted_image_set_id"] == a1["imageSetId"]
    assert wrong["image_set_id"] != a1["imageSetId"]
    assert status_json(job)["prediction"]["confirmed"] is False


def test_a_mismatch_injected_after_the_job_is_named_file_by_file(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    job = submit(
        tmp_path,
        [f"{STUDY_A},,{STUDY_FILE}", f"{STUDY_A},{SERIES_A2},{SERIES_FILE}"],
    )
    job = run_to_results(job)
    a2 = next(s for s in localaws.image_sets() if s["seriesInstanceUID"] == SERIES_A2)
    # As another client's UpdateImageSetMetadata would: the stored series description is no longer the file's.
    localaws.change_metadata(a2["imageSetId"], "0008103E", "LO", "CHANGED LATER")
    job = verify(job)
    assert job.verification == ImportJob.Verification.MISMATCHES
    by_file = dict(verification.mismatches_by_file(job))
    assert list(by_file) == [SERIES_FILE]
    [mismatch] = by_file[SERIES_FILE]
    assert (mismatch["keyword"], mismatch["level"], mismatch["expected"]) == (
        "SeriesDescription",
        "series",
        "T2 TSE AXIAL",
    )
    assert mismatch["stored"] == "CHANGED LATER"
    assert mismatch["image_set_id"] == a2["imageSetId"]
    status = status_json(job)["verification"]
    assert (status["state"], status["mismatches"]) == ("mismatches", 1)
    # The series file wins over the study file for A2's StudyDescription ("SERIES WINS"), and that is verified.
    assert status["attributes_checked"] == 3
    assert "1 of 3 attributes" in verification.verification_sentence(job)


def test_not_consistent_yet_is_asked_again_and_the_image_sets_read_are_kept(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    job = run_to_results(submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"]))
    localaws.clear_calls()
    # The second image set answers "not consistent yet" once (botocore does not retry a ConflictException).
    localaws.add_fault(
        service="medical-imaging", operation="GetImageSetMetadata",
        error="ConflictException", count=1, after=1,
        message="Requested ImageSet metadata is not consistent yet. Please retry after a few seconds.",
    )  # fmt: skip
    delay = verification.job_verify(job_id=job.pk)
    assert delay is not None
    job.refresh_from_db()
    assert job.verification == ImportJob.Verification.PENDING
    assert status_json(job)["verification"]["state"] == "pending"
    assert "not consistent yet" in verification.verification_sentence(job)
    assert len(job.verification_detail["done"]) == 1
    ImportJob.objects.filter(pk=job.pk).update(verification_lease_until=None)
    job = verify(job)
    assert job.verification == ImportJob.Verification.VERIFIED
    # One read, one refused, then only the two sets not yet read: three reads in all.
    reads = localaws.calls("medical-imaging", "GetImageSetMetadata")
    assert len([c for c in reads if c["status"] == 200]) == 3


def test_throttling_past_the_budget_says_not_verified_yet_with_the_reason_and_the_job_is_untouched(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle, settings: Any
) -> None:
    job = run_to_results(submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"]))
    status_before = job.status_code
    settings.JOBS_VERIFY_PATIENCE_S = 0
    localaws.add_fault(
        service="medical-imaging", operation="GetImageSetMetadata",
        error="ThrottlingException", rate=1.0,
    )  # fmt: skip
    job = verify(job)
    assert job.verification == ImportJob.Verification.NOT_VERIFIED
    assert job.status_code == status_before
    sentence = verification.verification_sentence(job)
    assert sentence.startswith(
        "Overrides not verified yet: HealthImaging kept throttling"
    )
    assert status_json(job)["verification"] == {
        "state": "not_verified",
        "image_sets": 0,
        "attributes_checked": 0,
        "mismatches": 0,
    }
    assert job.record == {}
    # An operator asks again once AWS lets it through.
    localaws.clear_faults()
    assert verification.job_verify_again(job=job, actor=None)
    job = verify(job)
    assert job.verification == ImportJob.Verification.VERIFIED


def test_within_the_budget_throttling_is_asked_again(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    job = run_to_results(submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"]))
    localaws.add_fault(
        service="medical-imaging", operation="GetImageSetMetadata",
        error="ThrottlingException", rate=1.0,
    )  # fmt: skip
    assert verification.job_verify(job_id=job.pk) is not None
    job.refresh_from_db()
    assert job.verification == ImportJob.Verification.PENDING
    assert "throttling" in job.verification_detail["retrying"]


def test_a_deleted_image_set_is_named_as_gone(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    job = run_to_results(submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"]))
    a1 = next(s for s in localaws.image_sets() if s["seriesInstanceUID"] == SERIES_A1)
    with localaws.server.healthimaging.lock:
        del localaws.server.healthimaging.state.image_sets[a1["imageSetId"]]
    job = verify(job)
    assert job.verification == ImportJob.Verification.MISMATCHES
    assert job.verification_detail["gone"] == [a1["imageSetId"]]


def test_a_job_that_has_not_ended_is_not_verified_and_reads_as_pending(
    tmp_path: Path, store: Datastore
) -> None:
    job = submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    # Not ended: nothing to claim.
    assert verification.job_verify(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.verification == ImportJob.Verification.NONE
    assert status_json(job)["verification"]["state"] == "pending"


def test_a_second_message_for_a_verified_job_does_nothing(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    job = verify(run_to_results(submit(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])))
    localaws.clear_calls()
    assert verification.job_verify(job_id=job.pk) is None
    assert localaws.calls("medical-imaging", "GetImageSetMetadata") == []
    assert (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.JOB_VERIFIED, target_id=str(job.pk)
        ).count()
        == 1
    )
