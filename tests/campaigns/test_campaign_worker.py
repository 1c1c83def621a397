"""End to end: a campaign planned, staged, submitted and accounted for by a real Celery worker against localaws,
and a job that failed as a whole retried to the end."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from imports import tasks
from imports.campaigns import accounting, retry
from imports.models import Campaign, CampaignCopy, CampaignObject, Datastore, ImportJob
from localaws.imagesets import value_of
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, OBJECTS, SKIPPED, STAGING
from tests.conftest import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def run(*args: str) -> str:
    out = StringIO()
    call_command("campaign", *args, stdout=out)
    return out.getvalue()


def test_a_campaign_runs_to_completed_with_every_object_accounted_for(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    archive: Datastore,
    mappings_csv: Path,
) -> None:
    lines = run(
        "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING, "--json",
    ).splitlines()  # fmt: skip
    pk = json.loads(lines[-1])["campaign"]
    run("start", str(pk))
    run("start", str(pk))

    def ended() -> bool:
        tasks.jobs_poll.delay()  # as beat would
        accounting.campaign_advance(campaign_id=pk)
        return Campaign.objects.get(pk=pk).ended_at is not None

    try:
        wait_for(ended, timeout=120, interval=0.5, what="the campaign to end")
    except BaseException:
        print(celery_worker_process.output()[-4000:])
        raise
    status = json.loads(run("status", str(pk), "--json"))
    assert status == {
        "campaign": pk,
        "state": "completed",
        "jobs": 5,
        "objects": OBJECTS,
        "imported": OBJECTS - SKIPPED,
        "failed": 0,
        "skipped": SKIPPED,
        "not_imported": 0,
        "unaccounted": 0,
    }
    # As many AWS jobs as planned, each started once, and every copy made and verified.
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 5
    assert ImportJob.objects.filter(status=ImportJob.Status.COMPLETED).count() == 5
    assert set(CampaignCopy.objects.values_list("status", flat=True)) == {"copied"}
    listed = localaws.s3_client().list_objects_v2(
        Bucket="staging", Prefix=f"campaigns/{pk}/"
    )
    assert listed["KeyCount"] == 13
    # Study 1's two jobs each found the metadata file under their own input, and applied it.
    study1 = CampaignObject.objects.filter(key__startswith="in/study1/")
    assert all(o.outcome == "imported" and o.is_primary for o in study1)
    held = localaws.server.healthimaging.state.image_sets
    described = {
        value_of(held[o.image_set_id].metadata, "StudyDescription") for o in study1
    }
    assert described == {"CT CHEST"}


def test_a_job_that_fails_as_a_whole_is_not_imported_then_retried_to_completed(
    celery_worker_process: WorkerProcess, localaws: LocalAWSHandle, archive: Datastore
) -> None:
    lines = run(
        "plan", "--datastore", archive.name, "--input", ARCHIVE, "--max-files", "4", "--staging", STAGING,
        "--json",
    ).splitlines()  # fmt: skip
    pk, planned = json.loads(lines[-1])["campaign"], len(lines) - 1
    localaws.add_fault(
        fail_job=True, count=1, message="DICOM import job has failed. Injected"
    )
    run("start", str(pk))

    def ended() -> bool:
        tasks.jobs_poll.delay()  # as beat would
        accounting.campaign_advance(campaign_id=pk)
        return Campaign.objects.get(pk=pk).ended_at is not None

    try:
        wait_for(ended, timeout=120, interval=0.5, what="the campaign to end")
    except BaseException:
        print(celery_worker_process.output()[-4000:])
        raise
    first = json.loads(run("status", str(pk), "--json"))
    assert first["not_imported"] > 0
    assert first["imported"] + first["not_imported"] + first["skipped"] == OBJECTS
    assert first["unaccounted"] == 0

    done = retry.campaign_retry_failed(actor=None, campaign_id=pk)
    assert len(done.jobs) == 1
    try:
        wait_for(ended, timeout=120, interval=0.5, what="the retry to end")
    except BaseException:
        print(celery_worker_process.output()[-4000:])
        raise
    status = json.loads(run("status", str(pk), "--json"))
    assert status == {
        "campaign": pk, "state": "completed", "jobs": planned, "objects": OBJECTS,
        "imported": OBJECTS - SKIPPED, "failed": 0, "skipped": SKIPPED, "not_imported": 0, "unaccounted": 0,
    }  # fmt: skip
    # One AWS job a planned job, and one more for the retry.
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == planned + 1
    assert CampaignObject.objects.filter(campaign_id=pk).count() == OBJECTS
