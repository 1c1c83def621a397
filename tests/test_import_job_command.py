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

from imports import jobs, jobtracking, limiter
from imports.models import Datastore, ImportJob
from localaws.testing import LocalAWSHandle, dicom_bytes

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.41"


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_job", *args, stdout=out)
    return out.getvalue()


def test_submit_prints_the_new_jobs_id_alone_on_the_last_line(
    datastore: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "study_instance_uid,series_instance_uid,metadata_file_path\n"
        f"{STUDY},,metadata/study.json\n"
        f"{STUDY},{STUDY}.1,metadata/series.json\n"
    )
    output = _run(
        "submit",
        "--datastore",
        "Radiology",
        "--name",
        "from-cli",
        "--mappings",
        str(mappings),
    )
    job = ImportJob.objects.get()
    assert output.splitlines()[-1] == str(job.pk)
    assert job.status == ImportJob.Status.PENDING
    assert job.request["jobName"] == "from-cli"
    assert jobs.request_mappings(job.request) == [
        {"studyInstanceUID": STUDY, "metadataFilePath": "metadata/study.json"},
        {"studyInstanceUID": STUDY, "seriesInstanceUID": f"{STUDY}.1", "metadataFilePath": "metadata/series.json"},
    ]  # fmt: skip


def test_submit_refuses_with_every_problem_and_exit_1(
    datastore: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "study_instance_uid,series_instance_uid,metadata_file_path\n"
        "1.2.03,,metadata/a.json\n"
        f"{STUDY},,\n"
        f"{STUDY},,metadata/b.json\n"
    )
    with pytest.raises(CommandError) as caught:
        _run("submit", "--datastore", "Radiology", "--name", "bad name", "--output", "s3://bucket-out/no-slash", "--mappings", str(mappings))  # fmt: skip
    assert caught.value.returncode == 1
    message = str(caught.value)
    assert "--output: The output S3 URI must end with “/”" in message
    assert "--name: A job name is 1-64 characters" in message
    assert (
        "--mappings line 2: study_instance_uid: UID component '03' has a leading zero"
        in message
    )
    assert "--mappings line 3: metadata_file_path must be" in message
    assert "--mappings line 4: the same study and series as line 3" in message
    assert not ImportJob.objects.exists()
    with pytest.raises(CommandError, match="No enabled datastore is named “Nope”"):
        _run("submit", "--datastore", "Nope")


def test_submit_with_the_same_idempotency_key_twice_makes_one_job(
    datastore: Datastore,
) -> None:
    first = _run(
        "submit", "--datastore", "Radiology", "--idempotency-key", "nightly-42"
    )
    second = _run(
        "submit", "--datastore", "Radiology", "--idempotency-key", "nightly-42"
    )
    assert first.splitlines()[-1] == second.splitlines()[-1]
    assert ImportJob.objects.count() == 1


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
        request=jobs.job_request_build(datastore=datastore), idempotency_key="k",
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
