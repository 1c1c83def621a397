"""S3 keys that carry a patient's ID or name reach viewers masked: the scan page and CSV, the preview's "Original
header of …", the job page and its results downloads. Operators (who may reveal) see the keys as they are. The
scan's JSON panel names the position of a bad key or value instead of quoting it, for everyone."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from imports.dicom.patient import ValueMask
from imports.drafts import services as drafts
from imports.models import ImportDraft, ImportJob, ImportJobResult, Scan
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import (
    BUCKET,
    INPUT,
    OUTPUT,
    STUDY_A,
    make_datastore,
    make_job,
    put_json,
    scan_prefix,
)

PATIENT_ID = "DEMO0001"
PATIENT_NAME = "Doe^Jane"
SERIES = f"{STUDY_A}.1"
DICOM_KEY = f"{PATIENT_ID}/ct/1.dcm"
LEAKS = (PATIENT_ID, "Doe^Jane", "Doe_Jane", "Jane")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("incoming/DEMO0001/ct/1.dcm", "incoming/D***/ct/1.dcm"),
        ("incoming/demo0001.json", "incoming/d***.json"),
        ("incoming/DEMO0001_ct/x", "incoming/D***_ct/x"),
        ("incoming/Doe_Jane/x", "incoming/D***/x"),
        ("incoming/Doe^Jane/x", "incoming/D*** J***/x"),
        (
            "File s3://b/DEMO0001/1.dcm is not DICOM",
            "File s3://b/D***/1.dcm is not DICOM",
        ),
        # Inside a longer run of letters and digits, or a value too short to tell: kept.
        ("incoming/XDEMO00012/x", "incoming/XDEMO00012/x"),
        ("incoming/P1/x", "incoming/P1/x"),
    ],
)
def test_a_known_value_is_masked_where_it_stands_whole(text: str, masked: str) -> None:
    assert ValueMask([PATIENT_ID, PATIENT_NAME, "P1"])(text) == masked


def test_an_empty_mask_changes_nothing() -> None:
    assert not ValueMask()
    assert ValueMask()("incoming/DEMO0001/") == "incoming/DEMO0001/"


@pytest.fixture
def scan(db: None, localaws: LocalAWSHandle) -> Scan:
    localaws.create_bucket(BUCKET)
    localaws.create_bucket("draft-out")
    for instance in (1, 2):
        localaws.put(
            f"{INPUT}{PATIENT_ID}/ct/{instance}.dcm",
            dicom_bytes(
                study=STUDY_A,
                series=SERIES,
                sop=f"{SERIES}.{instance}",
                PatientName=PATIENT_NAME,
                PatientID=PATIENT_ID,
            ),
        )
    localaws.put(f"{INPUT}Doe_Jane/notes.txt", b"not DICOM at all")
    put_json(
        localaws,
        f"{PATIENT_ID}/bad.json",
        {
            PATIENT_NAME: {"vr": "LO", "Value": ["x"]},
            "0020000D": {"vr": "UI", "Value": [PATIENT_NAME]},
        },
    )
    put_json(
        localaws,
        "metadata/study.json",
        {
            "0020000D": {"vr": "UI", "Value": [STUDY_A]},
            "00081030": {"vr": "LO", "Value": ["CT"]},
        },
    )
    return scan_prefix()


def _leaks(text: str) -> list[str]:
    return [value for value in LEAKS if value in text]


def test_the_scan_page_masks_patient_values_in_keys_for_a_viewer(
    scan: Scan, client_bob: Client, client_alice: Client
) -> None:
    url = reverse("imports:scan_detail", args=[scan.pk])
    viewer = client_bob.get(url).content.decode()
    assert _leaks(viewer) == []
    assert '<span class="seg">D***/</span>' in viewer  # the folder, masked
    assert "notes.txt" in viewer
    operator = client_alice.get(url).content.decode()
    assert f'<span class="seg">{PATIENT_ID}/</span>' in operator
    assert '<span class="seg">Doe_Jane/</span>' in operator


def test_the_json_panel_names_the_position_of_a_bad_key_and_value_for_everyone(
    scan: Scan, client_alice: Client
) -> None:
    # The operator sees keys as they are, and the tree masked until a reveal: nothing else may quote the name.
    page = client_alice.get(reverse("imports:scan_detail", args=[scan.pk]))
    body = page.content.decode()
    assert "Doe^Jane" not in body
    assert "key 1 is not a valid key" in body
    assert "UID contains characters other than digits 0-9 and" in body


def test_the_scan_csv_masks_keys_for_a_viewer_only(
    scan: Scan, client_bob: Client, client_alice: Client
) -> None:
    url = reverse("imports:scan_export", args=[scan.pk])
    viewer = b"".join(client_bob.get(url).streaming_content).decode()  # type: ignore[attr-defined]
    assert _leaks(viewer) == []
    keys = [row["key"] for row in csv.DictReader(io.StringIO(viewer))]
    assert "incoming/D***/ct/1.dcm" in keys
    operator = b"".join(client_alice.get(url).streaming_content).decode()  # type: ignore[attr-defined]
    assert f"incoming/{DICOM_KEY}" in operator


@pytest.fixture
def draft(scan: Scan, alice: User) -> ImportDraft:
    draft = drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )
    return drafts.draft_assign(
        draft=draft,
        actor=alice,
        version=draft.version,
        targets=[(STUDY_A, "")],
        path="metadata/study.json",
    )


def test_the_preview_names_the_sample_header_masked_for_a_viewer(
    draft: ImportDraft, client_bob: Client, client_alice: Client
) -> None:
    url = reverse("imports:draft_preview", args=[draft.pk])
    viewer = client_bob.get(url, {"series": SERIES}).content.decode()
    assert "Original header of <code>incoming/D***/ct/" in viewer
    assert _leaks(viewer) == []
    operator = client_alice.get(url, {"series": SERIES}).content.decode()
    assert f"Original header of <code>incoming/{PATIENT_ID}/ct/" in operator


@pytest.fixture
def job(scan: Scan, alice: User) -> ImportJob:
    job = make_job(
        make_datastore(),
        actor=alice,
        input_s3_uri=INPUT,
        status=ImportJob.Status.COMPLETED,
        results=ImportJob.Results.DONE,
        failure_count=1,
    )
    ImportJobResult.objects.create(
        job=job,
        outcome=ImportJobResult.Outcome.FAILURE,
        line=1,
        input_file=f"{INPUT}{DICOM_KEY}",
        exception_type="InvalidFile",
        message=f"{INPUT}{DICOM_KEY} is not a DICOM P10 file",
    )
    return job


def test_the_job_page_and_its_results_mask_keys_for_a_viewer(
    job: ImportJob, client_bob: Client, client_alice: Client
) -> None:
    page = client_bob.get(reverse("imports:job_detail", args=[job.pk])).content.decode()
    assert _leaks(page) == []
    assert f"{INPUT}D***/ct/1.dcm" in page
    for fmt in ("csv", "jsonl"):
        url = reverse("imports:job_results_download", args=[job.pk, fmt])
        body = b"".join(client_bob.get(url).streaming_content).decode()  # type: ignore[attr-defined]
        assert _leaks(body) == [], fmt
        assert f"{INPUT}D***/ct/1.dcm" in body
    line = json.loads(
        b"".join(
            client_bob.get(
                reverse("imports:job_results_download", args=[job.pk, "jsonl"])
            ).streaming_content  # type: ignore[attr-defined]
        )
    )
    assert line["message"] == f"{INPUT}D***/ct/1.dcm is not a DICOM P10 file"
    operator = client_alice.get(
        reverse("imports:job_detail", args=[job.pk])
    ).content.decode()
    assert f"{INPUT}{DICOM_KEY}" in operator
