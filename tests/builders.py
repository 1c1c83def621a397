"""Builders for the tests: confirmed import jobs, scans, and a small input prefix for the composer.

- `make_job` confirms a job the way the composer's confirmation does (`jobs.job_create`), then sets any
  row fields a test needs (a status, results).
- `make_scan` starts a scan without enqueueing it (the test runs or shapes it itself).
- The drafts world: two studies, three series, and metadata files of every kind (`seed_prefix`); and
  `stored_before`, which imports some of its series into a localaws datastore first, by a real import job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User

from imports.jobs import request as jobrequest
from imports.jobs import submit as jobs
from imports.mappings.rules import Mapping
from imports.models import Datastore, ImportDraft, ImportJob, Scan
from imports.models.datastores import MAX_START_JOBS_PER_SECOND
from imports.scanning import control, run
from localaws.testing import LocalAWSHandle, dicom_bytes

BUCKET = "draft-in"
PREFIX = "incoming/"
INPUT = f"s3://{BUCKET}/{PREFIX}"
OUTPUT = "s3://draft-out/results/"

STUDY_A = "1.2.826.0.1.3680043.8.498.10"
SERIES_A1 = "1.2.826.0.1.3680043.8.498.10.1"
SERIES_A2 = "1.2.826.0.1.3680043.8.498.10.2"
STUDY_B = "1.2.826.0.1.3680043.8.498.20"
SERIES_B1 = "1.2.826.0.1.3680043.8.498.20.1"

STUDY_FILE = "metadata/study-a.json"
SERIES_FILE = "metadata/series-a2.json"
MALFORMED_FILE = "metadata/broken.json"
WRONG_VR_FILE = "metadata/wrong-vr.json"


def make_job(
    datastore: Datastore,
    *,
    actor: User | None = None,
    draft: ImportDraft | None = None,
    request: dict[str, Any] | None = None,
    key: str | None = None,
    input_s3_uri: str | None = None,
    job_name: str = "",
    mappings: Iterable[Mapping] = (),
    import_again: bool = True,
    **fields: Any,
) -> ImportJob:
    """A confirmed job (PENDING, submit enqueued on commit), with `fields` then written to its row.

    Most worlds hold several jobs of one request, so the duplicate-request guard is passed by default
    (`import_again`); its own tests (tests/jobs/test_jobs_submit.py, the confirmation pages) pass False.
    """
    if request is None:
        request = jobrequest.job_request_build(
            datastore=datastore,
            input_s3_uri=input_s3_uri,
            job_name=job_name,
            mappings=mappings,
        )
    job = jobs.job_create(
        actor=actor,
        draft=draft,
        datastore=datastore,
        request=request,
        idempotency_key=key or uuid.uuid4().hex,
        import_again=import_again,
    )
    if fields:
        ImportJob.objects.filter(pk=job.pk).update(**fields)
        job.refresh_from_db()
    return job


def make_scan(
    *, bucket: str = "b", prefix: str = "p/", region: str = "us-east-1", **fields: Any
) -> Scan:
    """A queued scan that no worker was told about, with `fields` then written to its row."""
    scan, _ = control.scan_start(
        actor=None, bucket=bucket, prefix=prefix, region=region, enqueue=False
    )
    if fields:
        Scan.objects.filter(pk=scan.pk).update(**fields)
        scan.refresh_from_db()
    return scan


def dicom_json(**attributes: tuple[str, list[Any]]) -> dict[str, Any]:
    return {tag: {"vr": vr, "Value": value} for tag, (vr, value) in attributes.items()}


STUDY_DOCUMENT = dicom_json(
    **{
        "0020000D": ("UI", [STUDY_A]),
        "00081030": ("LO", ["CT CHEST W CONTRAST"]),
    }
)
SERIES_DOCUMENT = dicom_json(
    **{
        "0020000E": ("UI", [SERIES_A2]),
        "0008103E": ("LO", ["T2 TSE AXIAL"]),
        "00081030": ("LO", ["SERIES WINS"]),
    }
)


def put_json(localaws: LocalAWSHandle, path: str, document: Any) -> None:
    body = document if isinstance(document, (bytes, str)) else json.dumps(document)
    localaws.put(f"{INPUT}{path}", body)


def seed_prefix(localaws: LocalAWSHandle) -> None:
    localaws.create_bucket(BUCKET)
    localaws.create_bucket("draft-out")
    for study, series, number, description in (
        (STUDY_A, SERIES_A1, 1, "CT Chest w/ contrast"),
        (STUDY_A, SERIES_A2, 2, "CT CHEST W CONTRAST"),
        (STUDY_B, SERIES_B1, 1, "MR KNEE"),
    ):
        for instance in (1, 2):
            localaws.put(
                f"{INPUT}{series}/{instance}.dcm",
                dicom_bytes(
                    study=study,
                    series=series,
                    sop=f"{series}.{instance}",
                    SeriesNumber=number,
                    InstanceNumber=instance,
                    StudyDescription=description,
                    SeriesDescription=f"series {number}",
                    PatientName="Doe^Jane",
                    PatientID="PAT-1",
                ),
            )
    put_json(localaws, STUDY_FILE, STUDY_DOCUMENT)
    put_json(localaws, SERIES_FILE, SERIES_DOCUMENT)
    put_json(localaws, MALFORMED_FILE, '{"00081030": {"vr": "LO", "Value": ["x"]')
    put_json(
        localaws,
        WRONG_VR_FILE,
        dicom_json(**{"0020000D": ("UI", [STUDY_B]), "00081030": ("PN", ["KNEE"])}),
    )


def scan_prefix() -> Scan:
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region="us-east-1", enqueue=False
    )
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    assert result.status == Scan.Status.COMPLETED, result.error
    return result


def make_datastore() -> Datastore:
    return Datastore.objects.create(
        name="Composer tests",
        region="us-east-1",
        datastore_id="0123456789abcdef0123456789abcdef",
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
        start_jobs_per_second=MAX_START_JOBS_PER_SECOND,  # a submission slot every 25 ms
    )


def make_localaws_datastore(localaws: LocalAWSHandle) -> Datastore:
    """make_datastore(), with a datastore that localaws holds (its import jobs and image sets go there)."""
    datastore = make_datastore()
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    return datastore


def stored_before(
    localaws: LocalAWSHandle, datastore: Datastore, **series: dict[str, Any]
) -> None:
    """Import one instance of each named series (A1, A2, B1: attributes as seed_prefix writes them, with
    overrides) into the datastore (created in localaws) by a real import job, outside the draft's prefix."""
    defaults = {
        SERIES_A1: (STUDY_A, 1, "CT Chest w/ contrast"),
        SERIES_A2: (STUDY_A, 2, "CT CHEST W CONTRAST"),
        SERIES_B1: (STUDY_B, 1, "MR KNEE"),
    }
    for name, overrides in series.items():
        uid = {"A1": SERIES_A1, "A2": SERIES_A2, "B1": SERIES_B1}[name]
        study, number, description = defaults[uid]
        attributes: dict[str, Any] = {
            "SeriesNumber": number,
            "StudyDescription": description,
            "PatientName": "Doe^Jane",
            "PatientID": "PAT-1",
        } | overrides
        localaws.put(
            f"s3://{BUCKET}/earlier/{name}.dcm",
            dicom_bytes(study=study, series=uid, **attributes),
        )
    job = localaws.start_import(
        datastore.datastore_id, f"s3://{BUCKET}/earlier/", OUTPUT
    )
    assert (
        localaws.wait_for_job(datastore.datastore_id, job)["jobStatus"] == "COMPLETED"
    )
