"""`manage.py import_job submit|status|list`."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imports import jobrequest, jobs, jobtracking, limiter
from imports.models import Datastore, ImportJob
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.drafts_world import (
    SERIES_A2,
    SERIES_FILE,
    STUDY_A,
    STUDY_FILE,
    make_datastore,
    seed_prefix,
)

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.41"


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_job", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def composer_world(localaws: LocalAWSHandle) -> Datastore:
    """The composer tests' prefix: two studies, three series, metadata files of every kind."""
    seed_prefix(localaws)
    return make_datastore()


def test_submit_prints_the_new_jobs_id_alone_on_the_last_line(
    composer_world: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        f"{STUDY_A},,{STUDY_FILE}\n"
        f"{STUDY_A},{SERIES_A2},{SERIES_FILE}\n"
    )
    output = _run(
        "submit", "--datastore", "Composer tests", "--name", "from-cli", "--mappings", str(mappings),
    )  # fmt: skip
    job = ImportJob.objects.get()
    assert output.splitlines()[-1] == str(job.pk)
    # The warnings are printed; they do not stop the job.
    assert "warning: all rows: " in output
    assert job.status == ImportJob.Status.PENDING
    assert job.request["jobName"] == "from-cli"
    assert jobrequest.request_mappings(job.request) == [
        {"studyInstanceUID": STUDY_A, "metadataFilePath": STUDY_FILE},
        {"studyInstanceUID": STUDY_A, "seriesInstanceUID": SERIES_A2, "metadataFilePath": SERIES_FILE},
    ]  # fmt: skip


def test_submit_refuses_with_every_problem_and_exit_1(
    composer_world: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        "1.2.03,,metadata/a.json\n"
        f"{STUDY_A},,\n"
        f"{STUDY_A},,{STUDY_FILE}\n"
    )
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_job", "submit", "--datastore", "Composer tests", "--name", "bad name",
            "--output", "s3://bucket-out/no-slash", "--mappings", str(mappings), stdout=out,
        )  # fmt: skip
    assert caught.value.returncode == 1
    assert "The job was not submitted" in str(caught.value)
    printed = out.getvalue()
    assert "error: all rows --output: The output S3 URI must end with “/”" in printed
    assert "error: all rows --name: A job name is 1-64 characters" in printed
    assert (
        "error: row 1 studyInstanceUID: StudyInstanceUID: UID component '03' has a leading zero"
        in printed
    )
    assert "error: row 2 metadataFilePath: " in printed
    assert "[duplicate_mapping]" in printed
    assert not ImportJob.objects.exists()
    with pytest.raises(CommandError, match="No enabled datastore is named “Nope”"):
        _run("submit", "--datastore", "Nope")


def test_submit_with_the_same_idempotency_key_twice_makes_one_job(
    composer_world: Datastore,
) -> None:
    first = _run(
        "submit", "--datastore", "Composer tests", "--idempotency-key", "nightly-42"
    )
    second = _run(
        "submit", "--datastore", "Composer tests", "--idempotency-key", "nightly-42"
    )
    assert first.splitlines()[-1] == second.splitlines()[-1]
    assert ImportJob.objects.count() == 1
    # A plain import (no mappings file) sends no importConfiguration at all.
    assert "importConfiguration" not in ImportJob.objects.get().request


def test_status_json_says_completed_with_errors_when_files_failed(
    localaws: LocalAWSHandle, datastore: Datastore, settings: Any
) -> None:
    settings.JOBS_START_INTERVAL_S = 0.01
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=STUDY + ".1")
    )
    localaws.put("s3://dicom-input/incoming/x.txt", b"not dicom")
    job_id = int(_run("submit", "--datastore", "Radiology").splitlines()[-1])
    jobs.job_submit(job_id=job_id)
    for _ in range(200):
        jobtracking.jobs_poll()
        if ImportJob.objects.get(pk=job_id).has_ended:
            break
    jobtracking.job_ingest_results(job_id=job_id)

    status = json.loads(_run("status", str(job_id), "--json"))
    job = ImportJob.objects.get(pk=job_id)
    assert status["status"] == "completed_with_errors"
    assert status["aws_job_id"] == job.aws_job_id
    assert (status["imported"], status["failed"]) == (1, 1)
    text = _run("status", str(job_id))
    assert "Completed with errors" in text
    assert "1 imported, 1 failed" in text
    listed = [json.loads(line) for line in _run("list", "--json").splitlines()]
    assert [item["id"] for item in listed] == [job_id]
    assert str(job_id) in _run("list")


@pytest.mark.django_db(transaction=True)
def test_status_wait_blocks_until_the_job_has_ended(datastore: Datastore) -> None:
    job = jobs.job_create(
        actor=None, draft=None, datastore=datastore,
        request=jobrequest.job_request_build(datastore=datastore), idempotency_key="k",
    )  # fmt: skip
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.IN_PROGRESS)

    def end_it() -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            results=ImportJob.Results.DONE,
            message="broken",
        )

    timer = threading.Timer(0.5, end_it)
    timer.start()
    status = json.loads(
        _run("status", str(job.pk), "--wait", "--json", "--interval", "0.05")
    )
    timer.join()
    assert status["status"] == "failed"
    assert status["message"] == "broken"


def test_status_of_an_unknown_job_exits_1(db: None) -> None:
    with pytest.raises(CommandError) as caught:
        _run("status", "999999")
    assert caught.value.returncode == 1
