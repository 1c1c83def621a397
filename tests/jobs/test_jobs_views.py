"""The job pages: live status, results, downloads, new drafts, the history; who may do what."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from imports.drafts import services as drafts
from imports.jobs import derived as duplicates
from imports.jobs import request as jobrequest
from imports.mappings.rules import Mapping
from imports.models import (
    Datastore,
    ImportDraft,
    ImportJob,
    ImportJobResult,
    ObjectHeader,
    Scan,
    ScanObject,
    ScanSeries,
    ScanStudy,
)
from tests.builders import make_job

pytestmark = pytest.mark.django_db

STUDY_A = "1.2.826.0.1.3680043.8.498.21"
STUDY_B = "1.2.826.0.1.3680043.8.498.22"


def _job(datastore: Datastore, user: User | None = None, **fields: Any) -> ImportJob:
    request = jobrequest.job_request_build(
        datastore=datastore,
        job_name="ct",
        mappings=[
            Mapping(STUDY_A, "", "meta/a.json"),
            Mapping(STUDY_B, STUDY_B + ".1", "meta/b.json"),
        ],
    )
    return make_job(datastore, actor=user, request=request, **fields)


def _completed_with_results(
    datastore: Datastore, user: User | None = None
) -> ImportJob:
    job = _job(
        datastore,
        user,
        status=ImportJob.Status.COMPLETED,
        aws_job_id="c" * 32,
        submitted_at=timezone.now(),
        ended_at=timezone.now(),
        results=ImportJob.Results.DONE,
        success_count=2,
        failure_count=2,
        image_sets=[
            {"imageSetId": "1" * 32, "imageSetVersion": 1, "isPrimary": True},
            {"imageSetId": "2" * 32, "imageSetVersion": 1, "isPrimary": False},
        ],
        non_primary_count=1,
    )
    ImportJobResult.objects.bulk_create(
        [
            ImportJobResult(job=job, outcome="success", line=1, input_file="incoming/a1.dcm", image_set_id="1" * 32, is_primary=True),
            ImportJobResult(job=job, outcome="success", line=2, input_file="incoming/b1.dcm", image_set_id="2" * 32, is_primary=False),
            ImportJobResult(job=job, outcome="failure", line=1, input_file="incoming/a2.dcm", exception_type="ValidationException", message="DICOM attribute X does not exist"),
            ImportJobResult(job=job, outcome="failure", line=2, input_file="incoming/junk.txt", exception_type="ValidationException", message="DICOM attribute TransferSyntaxUID does not exist"),
        ]
    )  # fmt: skip
    return job


def test_the_status_fragment_polls_while_the_job_runs_and_answers_286_once_it_has_ended(
    client_bob: Client, datastore: Datastore, django_assert_max_num_queries: Any
) -> None:
    job = _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="a" * 32)
    # The session, the user with its permissions (config.auth), the job: nothing per result row.
    with django_assert_max_num_queries(3):
        running = client_bob.get(f"/jobs/{job.pk}/status/", HTTP_HX_REQUEST="true")
    assert running.status_code == 200
    assert b'hx-trigger="every 2s"' in running.content
    assert b"In progress" in running.content

    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.COMPLETED, results=ImportJob.Results.PENDING
    )
    reading = client_bob.get(f"/jobs/{job.pk}/status/")
    assert reading.status_code == 200
    assert b"Reading the per-file results" in reading.content

    ImportJob.objects.filter(pk=job.pk).update(
        results=ImportJob.Results.DONE, failure_count=1
    )
    ended = client_bob.get(f"/jobs/{job.pk}/status/")
    assert ended.status_code == 286
    assert b'hx-trigger="every' not in ended.content
    assert b"Completed with errors" in ended.content
    # The results section is loaded once, by the last fragment, without a page reload.
    assert f'hx-get="/jobs/{job.pk}/results/"'.encode() in ended.content


def test_the_status_fragment_does_not_load_a_large_jobs_stored_request(
    client_bob: Client, datastore: Datastore, django_assert_max_num_queries: Any
) -> None:
    job = _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="a" * 32)
    mappings = [
        {"studyInstanceUID": f"2.25.{n}", "metadataFilePath": f"meta/{n}.json"}
        for n in range(3000)
    ]
    request = {
        **job.request,
        "importConfiguration": {"dicomMetadataMappings": mappings},
    }
    ImportJob.objects.filter(pk=job.pk).update(request=request)
    with django_assert_max_num_queries(3) as captured:
        response = client_bob.get(f"/jobs/{job.pk}/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"In progress" in response.content
    job_queries = [
        q["sql"] for q in captured.captured_queries if "imports_importjob" in q["sql"]
    ]
    assert len(job_queries) == 1
    assert '"imports_importjob"."request"' not in job_queries[0]
    assert '"imports_importjob"."status"' in job_queries[0]
    # The job page itself still shows the request.
    page = client_bob.get(f"/jobs/{job.pk}/")
    assert b"meta/2999.json" in page.content


def test_with_sessions_in_a_shared_cache_the_status_fragment_makes_two_queries(
    settings: Any,
    bob: User,
    datastore: Datastore,
    django_assert_max_num_queries: Any,
) -> None:
    # What CACHE_URL=redis://... selects; the test's own locmem cache stands in for Redis in one process.
    settings.SESSION_ENGINE = "config.sessions"
    client = Client()
    client.force_login(bob)
    job = _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="a" * 32)
    with django_assert_max_num_queries(2):
        response = client.get(f"/jobs/{job.pk}/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"In progress" in response.content


def test_a_waiting_job_shows_its_place_in_the_queue(
    client_bob: Client, datastore: Datastore
) -> None:
    datastore.max_concurrent_jobs = 1
    datastore.save()
    _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="a" * 32)
    _job(datastore)
    third = _job(datastore)
    response = client_bob.get(f"/jobs/{third.pk}/status/")
    assert b"position 2" in response.content
    datastore.max_concurrent_jobs = 5
    datastore.save()
    response = client_bob.get(f"/jobs/{third.pk}/status/")
    assert b"Waiting for a worker" in response.content


def test_the_job_page_shows_results_failures_by_type_image_sets_request_and_events(
    client_bob: Client,
    datastore: Datastore,
    alice: User,
    django_assert_max_num_queries: Any,
) -> None:
    job = _completed_with_results(datastore, alice)
    with django_assert_max_num_queries(14):
        response = client_bob.get(f"/jobs/{job.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Completed with errors" in html
    assert "incoming/junk.txt" in html
    assert "Non-primary" in html
    assert "DICOM attribute TransferSyntaxUID does not exist" in html
    assert "&quot;dicomMetadataMappings&quot;" in html
    assert str(job.client_token) in html
    assert "Confirmed import job" in html
    # Viewers read; they are not offered actions.
    assert "Retry failed files" not in html


def test_the_file_table_filters_by_outcome_and_searches_by_file(
    client_bob: Client, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore)
    response = client_bob.get(
        f"/jobs/{job.pk}/results/",
        {"fragment": "files", "outcome": "failure", "q": "junk"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert 'id="job-files"' in html
    assert "incoming/junk.txt" in html
    assert "incoming/a2.dcm" not in html
    assert "incoming/a1.dcm" not in html


def test_results_download_as_csv_and_json_lines(
    client_bob: Client, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore)
    response = client_bob.get(f"/jobs/{job.pk}/results.csv")
    rows = list(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))  # type: ignore[attr-defined]
    )
    assert [r["input_file"] for r in rows] == [
        "incoming/a1.dcm", "incoming/b1.dcm", "incoming/a2.dcm", "incoming/junk.txt",
    ]  # fmt: skip
    assert rows[1]["is_primary"] == "False"
    response = client_bob.get(f"/jobs/{job.pk}/results.jsonl")
    lines = [
        json.loads(line)
        for line in b"".join(response.streaming_content).splitlines()  # type: ignore[attr-defined]
    ]
    assert lines[3]["exception_type"] == "ValidationException"
    assert client_bob.get(f"/jobs/{job.pk}/results.xml").status_code == 404


def test_each_failure_group_links_to_its_files_and_downloads_follow_the_filter(
    client_bob: Client, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore)
    ImportJobResult.objects.filter(input_file="incoming/a2.dcm").update(
        exception_type="InternalServerException"
    )
    results = client_bob.get(f"/jobs/{job.pk}/results/").content.decode()
    link = f"/jobs/{job.pk}/results/?fragment=files&amp;outcome=failure&amp;exception=ValidationException"
    assert f'hx-get="{link}"' in results
    table = client_bob.get(
        f"/jobs/{job.pk}/results/",
        {"fragment": "files", "outcome": "failure", "exception": "ValidationException"},
    ).content.decode()
    assert "incoming/junk.txt" in table
    assert "incoming/a2.dcm" not in table
    filtered = "outcome=failure&amp;exception=ValidationException"
    assert f'href="/jobs/{job.pk}/results.csv?{filtered}"' in table
    assert "Download these 1 filtered row:" in table

    def exported(query: dict[str, str]) -> list[str]:
        response = client_bob.get(f"/jobs/{job.pk}/results.csv", query)
        body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
        return [r["input_file"] for r in csv.DictReader(io.StringIO(body))]

    assert exported({"outcome": "failure", "exception": "ValidationException"}) == [
        "incoming/junk.txt"
    ]
    assert len(exported({})) == 4  # "All rows"


def test_the_image_set_table_is_paged_and_names_each_sets_series(
    client_bob: Client, datastore: Datastore, django_assert_max_num_queries: Any
) -> None:
    job = _completed_with_results(datastore)
    sets = [
        {"imageSetId": f"{n:032d}", "imageSetVersion": 1, "isPrimary": True}
        for n in range(120)
    ]
    ImportJob.objects.filter(pk=job.pk).update(image_sets=sets)
    # Image set 0 holds a1.dcm, whose series the scan knows.
    ImportJobResult.objects.filter(input_file="incoming/a1.dcm").update(
        image_set_id=f"{0:032d}"
    )
    scan = _scan_with(
        "dicom-input", {"incoming/a1.dcm": (STUDY_A, STUDY_A + ".1", "1.1")}
    )
    study = ScanStudy.objects.create(
        scan=scan, study_instance_uid=STUDY_A, instance_count=1, bytes=1
    )
    ScanSeries.objects.create(
        study=study, series_instance_uid=STUDY_A + ".1", series_number=3, modality="CT",
        series_description="Axial 2.0 lung", instance_count=1, bytes=1,
    )  # fmt: skip
    with django_assert_max_num_queries(12):
        first = client_bob.get(f"/jobs/{job.pk}/results/").content.decode()
    assert 'Image sets <span class="muted">(120)</span>' in first
    assert first.count('<tr class=""><td><code>0000') == 50
    assert "#3 Axial 2.0 lung" in first
    assert '<span class="badge">CT</span>' in first
    assert "Page 1 of 3" in first
    last = client_bob.get(
        f"/jobs/{job.pk}/results/", {"sets_page": "3"}
    ).content.decode()
    assert last.count('<tr class=""><td><code>0000') == 20
    assert f'<tr class=""><td><code>{119:032d}</code></td>' in last
    assert f'<tr class=""><td><code>{0:032d}</code></td>' not in last


def _scan_with(bucket: str, keys: dict[str, tuple[str, str, str]]) -> Scan:
    scan = Scan.objects.create(
        region="us-east-1", bucket=bucket, prefix="incoming/", status="completed"
    )
    for key, (study, series, sop) in keys.items():
        header = ObjectHeader.objects.create(
            bucket=bucket, key=key, etag=uuid.uuid4().hex, size=1, kind="dicom", status="ok",
            study_instance_uid=study, series_instance_uid=series, sop_instance_uid=sop,
        )  # fmt: skip
        ScanObject.objects.create(scan=scan, header=header)
    return scan


def test_retry_failed_files_makes_a_draft_with_only_the_mappings_of_the_failed_studies(
    client_alice: Client, alice: User, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore, alice)
    _scan_with(
        "dicom-input",
        {
            "incoming/a1.dcm": (STUDY_A, STUDY_A + ".1", "1.1"),
            "incoming/a2.dcm": (STUDY_A, STUDY_A + ".1", "1.2"),
            "incoming/b1.dcm": (STUDY_B, STUDY_B + ".1", "2.1"),
        },
    )
    response = client_alice.post(f"/jobs/{job.pk}/retry/", follow=True)
    draft = ImportDraft.objects.get()
    assert draft.source_job == job
    assert draft.owner == alice
    assert draft.job_name == "ct-retry"
    assert list(
        draft.mappings.values_list("study_instance_uid", "metadata_file_path")
    ) == [(STUDY_A, "meta/a.json")]
    html = response.content.decode()
    assert f"Draft {draft.pk} holds the 1 study of the failed files" in html
    assert "1 other failed file is" in html  # junk.txt: not DICOM, a retry cannot help


def test_retry_with_no_failed_file_in_a_known_study_makes_no_draft_and_says_so(
    client_alice: Client, alice: User, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore, alice)
    # No scan knows a failed file, and neither failed file is a mapped metadata file.
    response = client_alice.post(f"/jobs/{job.pk}/retry/", follow=True)
    assert not ImportDraft.objects.exists()
    html = response.content.decode()
    assert (
        "Nothing to retry: the 2 files that failed are not DICOM or not in a scan"
        in html
    )
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"


@pytest.mark.parametrize("action", ["retry", "clone"])
def test_a_draft_made_from_a_job_is_confirmable_at_once(
    client_alice: Client, alice: User, datastore: Datastore, action: str
) -> None:
    job = _completed_with_results(datastore, alice)
    _scan_with("dicom-input", {"incoming/a2.dcm": (STUDY_A, STUDY_A + ".1", "1.2")})
    client_alice.post(f"/jobs/{job.pk}/{action}/")
    draft = ImportDraft.objects.get()
    assert draft.content_hash
    assert draft.content_hash == drafts.draft_content_hash(draft=draft)
    page = client_alice.get(f"/drafts/{draft.pk}/confirm/").content.decode()
    assert f'value="{draft.content_hash}"' in page
    answer = client_alice.post(
        f"/drafts/{draft.pk}/confirm/",
        {"version": draft.version, "content_hash": draft.content_hash,
         "idempotency_key": str(uuid.uuid4())},
    )  # fmt: skip
    assert "The confirmation form was incomplete" not in answer.content.decode()


def test_clone_copies_every_mapping_and_viewers_may_not(
    client_alice: Client, client_bob: Client, datastore: Datastore
) -> None:
    job = _completed_with_results(datastore)
    assert client_bob.post(f"/jobs/{job.pk}/clone/").status_code == 403
    assert client_bob.post(f"/jobs/{job.pk}/retry/").status_code == 403
    assert not ImportDraft.objects.exists()
    client_alice.post(f"/jobs/{job.pk}/clone/")
    draft = ImportDraft.objects.get()
    assert draft.mappings.count() == 2
    assert drafts.draft_request(draft=draft) == {**job.request, "jobName": "ct-copy"}


def test_the_duplicate_guard_counts_instances_a_completed_job_already_imported(
    datastore: Datastore,
) -> None:
    job = _completed_with_results(datastore)
    scan = _scan_with(
        "dicom-input",
        {
            # a1 was imported by the job; "moved.dcm" is the same instance under another key.
            "incoming/a1.dcm": (STUDY_A, STUDY_A + ".1", "1.1"),
            "incoming/moved.dcm": (STUDY_B, STUDY_B + ".1", "2.1"),
            "incoming/new.dcm": (STUDY_B, STUDY_B + ".1", "9.9"),
        },
    )
    ObjectHeader.objects.create(
        bucket="dicom-input", key="incoming/b1.dcm", etag="e", size=1, kind="dicom", status="ok",
        study_instance_uid=STUDY_B, series_instance_uid=STUDY_B + ".1", sop_instance_uid="2.1",
    )  # fmt: skip
    found = duplicates.job_duplicate_instances(datastore=datastore, scan=scan)
    assert found.instances == 2
    assert found.job == job
    # A failed job imported nothing.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.FAILED)
    assert (
        duplicates.job_duplicate_instances(datastore=datastore, scan=scan).instances
        == 0
    )


def test_the_jobs_list_filters_pages_and_exports(
    client_bob: Client,
    datastore: Datastore,
    alice: User,
    django_assert_max_num_queries: Any,
) -> None:
    _completed_with_results(datastore, alice)
    for _ in range(60):
        _job(datastore)
    with django_assert_max_num_queries(8):
        response = client_bob.get("/jobs/")
    assert response.status_code == 200
    assert "61 jobs" in response.content.decode()
    filtered = client_bob.get(
        "/jobs/", {"status": "completed_with_errors"}
    ).content.decode()
    assert "1 job<" in filtered
    by_submitter = client_bob.get("/jobs/", {"submitter": "alic"}).content.decode()
    assert "1 job<" in by_submitter
    export = client_bob.get("/jobs/export.csv", {"status": "pending"})
    rows = list(
        csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))  # type: ignore[attr-defined]
    )
    assert len(rows) == 60
    assert {r["status"] for r in rows} == {"pending"}


def test_the_dashboard_lists_active_jobs_in_one_polled_fragment(
    client_bob: Client, datastore: Datastore
) -> None:
    running = _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="a" * 32)
    html = client_bob.get("/").content.decode()
    assert 'hx-get="/jobs/active/"' in html
    assert f"Job {running.pk}" in html
    fragment = client_bob.get("/jobs/active/")
    assert fragment.status_code == 200
    assert 'hx-trigger="every 3s"' in fragment.content.decode()
    ImportJob.objects.update(status=ImportJob.Status.COMPLETED)
    idle = client_bob.get("/jobs/active/")
    # Still polling, slowly, so a job started from the CLI appears without a reload.
    assert idle.status_code == 200
    assert 'hx-trigger="every 15s"' in idle.content.decode()


def test_an_idle_dashboard_still_polls_and_shows_a_job_started_elsewhere(
    client_bob: Client, datastore: Datastore
) -> None:
    html = client_bob.get("/").content.decode()
    assert 'hx-get="/jobs/active/"' in html
    assert 'hx-trigger="every 15s"' in html
    started = _job(datastore, status=ImportJob.Status.IN_PROGRESS, aws_job_id="b" * 32)
    assert f"Job {started.pk}" in client_bob.get("/jobs/active/").content.decode()


def test_someone_without_a_role_sees_no_job(
    client: Client, nobody: User, datastore: Datastore
) -> None:
    job = _job(datastore)
    client.force_login(nobody)
    # One rule everywhere: a missing role is a 403 that names it, whether or not the job exists.
    assert client.get(f"/jobs/{job.pk}/").status_code == 403
    assert client.get("/jobs/999999/").status_code == 403
    assert client.get("/jobs/").status_code == 403


# --- The history, for auditors ----------------------------------------------------------------


def listed(client: Client, **params: str) -> list[int]:
    """The job IDs the history lists for these parameters, in order."""
    import re

    content = client.get("/jobs/", params).content.decode()
    return [int(pk) for pk in re.findall(r'<a href="/jobs/(\d+)/">', content)]


def test_the_history_answers_who_imported_a_study_by_its_uid(
    client_bob: Client, datastore: Datastore, alice: User
) -> None:
    named = _job(datastore, alice)  # its mappings name STUDY_A
    other = make_job(datastore, job_name="plain", key="plain")
    # The plain import had no mapping for the study, but its results list a file the scan knows as one of it.
    _scan_with(
        "dicom-input",
        {"incoming/x/1.dcm": ("1.2.840.99.7", "1.2.840.99.7.1", "1.2.840.99.7.1.1")},
    )
    ImportJobResult.objects.create(
        job=other, outcome="success", line=1, input_file="incoming/x/1.dcm"
    )
    assert listed(client_bob, q=STUDY_A) == [named.pk]
    assert listed(client_bob, q="1.2.840.99.7") == [other.pk]
    assert listed(client_bob, q="1.2.840.99.8") == []


def test_the_history_searches_by_aws_job_id_job_name_and_file_key(
    client_bob: Client, datastore: Datastore
) -> None:
    done = _completed_with_results(datastore)
    plain = _job(datastore, job_name="nightly-ct")
    ImportJob.objects.filter(pk=plain.pk).update(job_name="nightly-ct")
    assert listed(client_bob, q="c" * 32) == [done.pk]
    assert listed(client_bob, q="nightly") == [plain.pk]
    assert listed(client_bob, q="junk.txt") == [done.pk]


def test_the_history_filters_failures_and_non_primary_image_sets(
    client_bob: Client, datastore: Datastore
) -> None:
    done = _completed_with_results(datastore)
    clean = _job(
        datastore, status=ImportJob.Status.COMPLETED, results=ImportJob.Results.DONE
    )
    assert done.pk in listed(client_bob)
    assert clean.pk in listed(client_bob)
    assert listed(client_bob, failures="on") == [done.pk]
    assert listed(client_bob, non_primary="on") == [done.pk]
    assert listed(client_bob, external="yes") == []


def test_the_history_sorts_by_a_column_and_keeps_the_filters_in_the_url(
    client_bob: Client, datastore: Datastore
) -> None:
    few = _job(datastore, failure_count=1)
    many = _job(datastore, failure_count=5)
    none = _job(datastore)
    assert listed(client_bob, sort="-failed") == [many.pk, few.pk, none.pk]
    assert listed(client_bob, sort="failed") == [none.pk, few.pk, many.pk]
    content = client_bob.get(
        "/jobs/", {"sort": "failed", "submitter": "x"}
    ).content.decode()
    # Sorted ascending by failures now: the column's link reverses it, and keeps the filter.
    assert 'href="?submitter=x&amp;sort=-failed"' in content
    assert 'href="?submitter=x&amp;sort=-created"' in content


def test_an_invalid_history_filter_lists_nothing_and_says_why(
    client_bob: Client, datastore: Datastore
) -> None:
    _job(datastore)
    content = client_bob.get("/jobs/", {"since": "notadate"}).content.decode()
    assert listed(client_bob, since="notadate") == []
    assert "Enter the date as YYYY-MM-DD" in content
    assert client_bob.get("/jobs/", {"sort": "password"}).status_code == 200
    assert listed(client_bob, sort="password") == []
    assert client_bob.get("/jobs/export.csv", {"since": "notadate"}).status_code == 400


def test_the_history_exports_as_json_lines_and_the_export_is_audited(
    client_bob: Client, datastore: Datastore
) -> None:
    from imports.models import AuditEvent

    done = _completed_with_results(datastore)
    _job(datastore)
    response = client_bob.get("/jobs/export.jsonl", {"failures": "on"})
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["id"] for line in lines] == [done.pk]
    assert lines[0]["failed"] == 2
    event = AuditEvent.objects.filter(action="data.exported").latest("id")
    assert event.details["format"] == "jsonl"
    assert event.details["filters"] == {"failures": True}
