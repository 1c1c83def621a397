"""`campaign plan|start|pause|resume|cancel|status` against localaws over HTTP, with four files a job."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from imports.campaigns import accounting
from imports.enqueue import CAMPAIGN_ADVANCE, CAMPAIGN_STAGE, JOB_SUBMIT
from imports.models import (
    Campaign,
    CampaignCopy,
    CampaignJob,
    CampaignObject,
    Datastore,
    ImportJob,
)
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.campaigns.conftest import ARCHIVE, OBJECTS, SKIPPED, STAGING, STUDY1

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("campaign", *args, stdout=out)
    return out.getvalue()


def plan_json(
    datastore: Datastore, mappings: Path, *extra: str
) -> list[dict[str, Any]]:
    out = run(
        "plan",
        "--datastore",
        datastore.name,
        "--input",
        ARCHIVE,
        "--mappings",
        str(mappings),
        "--max-files",
        "4",
        "--staging",
        STAGING,
        "--json",
        *extra,
    )
    return [json.loads(line) for line in out.splitlines()]


def test_the_plan_cuts_along_folders_stages_the_series_folder_and_copies_the_metadata_file_into_both_jobs(
    archive: Datastore, mappings_csv: Path
) -> None:
    *jobs, totals = plan_json(archive, mappings_csv)
    campaign = Campaign.objects.get()
    assert totals == {
        "campaign": campaign.pk,
        "jobs": 5,
        "objects": OBJECTS,
        "staged_objects": 13,
    }
    base = f"{STAGING}{campaign.pk}/"
    assert [
        (j["job"], j["input"], j["files"], j["mappings"], j["staged"]) for j in jobs
    ] == [
        (1, f"{base}1/", 4, 0, 4),  # in/flat/: six files of one series, four then two
        (2, f"{base}2/", 2, 0, 2),
        (3, f"{base}3/", 4, 1, 4),  # in/study1/series1/ with a copy of meta/study1.json
        (4, f"{base}4/", 3, 1, 3),  # in/study1/series2/ with another copy
        (
            5,
            f"{ARCHIVE}study3/",
            2,
            0,
            0,
        ),  # a folder job at its own prefix, nothing copied
    ]
    inputs = [j["input"] for j in jobs]
    assert not any(a != b and a.startswith(b) for a in inputs for b in inputs)
    assert all(j["files"] <= 4 for j in jobs)
    copies = CampaignCopy.objects.filter(key="in/meta/study1.json")
    assert sorted(c.job.number for c in copies) == [3, 4]
    assert CampaignJob.objects.get(number=3).mappings == [
        {"studyInstanceUID": STUDY1, "metadataFilePath": "in/meta/study1.json"}
    ]
    # Every object once, in one job or skipped with the dashboard's reason; nothing runs yet.
    assert CampaignObject.objects.count() == OBJECTS
    assert dict(
        CampaignObject.objects.filter(outcome="skipped").values_list(
            "key", "skip_reason"
        )
    ) == {"in/readme.txt": "not DICOM", "in/meta/study1.json": "a metadata file"}
    assert campaign.state == Campaign.State.PLANNED
    assert not ImportJob.objects.exists()


def test_the_table_says_what_staging_costs(
    archive: Datastore, mappings_csv: Path
) -> None:
    out = run(
        "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING,
    )  # fmt: skip
    assert "Staging: 13 CopyObject requests" in out
    assert "GB-days if the copies stay 7 days" in out
    assert "campaign start" in out


def test_a_prefix_never_scanned_is_refused_and_nothing_is_stored(
    localaws: LocalAWSHandle, archive: Datastore
) -> None:
    with pytest.raises(
        CommandError,
        match=r"--input s3://archive/other/: this prefix has no completed scan",
    ) as refused:
        run("plan", "--datastore", archive.name, "--input", "s3://archive/other/")
    assert refused.value.returncode == 1
    assert "python manage.py scan s3://archive/other/" in str(refused.value)
    assert not Campaign.objects.exists()


def test_a_plan_that_must_stage_without_a_staging_prefix_is_refused(
    archive: Datastore,
) -> None:
    with pytest.raises(
        CommandError, match=r"--staging: 2 of the 5 jobs must be staged"
    ):
        run("plan", "--datastore", archive.name, "--input", ARCHIVE, "--max-files", "4")
    assert not Campaign.objects.exists()
    # With room for the whole folder, nothing is staged and no staging prefix is needed.
    assert (
        json.loads(
            run(
                "plan", "--datastore", archive.name, "--input", ARCHIVE, "--json"
            ).splitlines()[-1]
        )["staged_objects"]
        == 0
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-files", "0", "--max-files 0: give 1 to 5,000 files"),
        (
            "--max-bytes",
            str(10**12),
            "--max-bytes 1000000000000: give 1 to 10,000,000,000 bytes",
        ),
        (
            "--staging",
            "s3://archive/in/staged/",
            "--staging s3://archive/in/staged/ overlaps --input",
        ),
        (
            "--staging",
            "archive/x/",
            "--staging archive/x/: an S3 URI starts with s3://",
        ),
    ],
)
def test_bad_limits_and_staging_prefixes_are_named(
    archive: Datastore, option: str, value: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("plan", "--datastore", archive.name, "--input", ARCHIVE, option, value)
    assert not Campaign.objects.exists()


def test_a_mapped_file_under_no_input_is_refused(
    archive: Datastore, tmp_path: Path
) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{STUDY1},,meta/missing.json\n"
    )
    with pytest.raises(
        CommandError,
        match=r"--mappings row 2: meta/missing.json is under none of the inputs",
    ):
        run(
            "plan",
            "--datastore",
            archive.name,
            "--input",
            ARCHIVE,
            "--mappings",
            str(csv),
        )


def test_start_is_refused_when_a_source_changed_since_its_scan(
    localaws: LocalAWSHandle,
    archive: Datastore,
    mappings_csv: Path,
    sent_tasks: list[tuple[str, int]],
) -> None:
    *_, totals = plan_json(archive, mappings_csv)
    localaws.put(f"{ARCHIVE}study3/9.dcm", dicom_bytes(study="1.2.3", series="1.2.3.4"))
    with pytest.raises(
        CommandError, match=r"were added, removed or rewritten since its scan"
    ):
        run("start", str(totals["campaign"]))
    assert Campaign.objects.get().state == Campaign.State.PLANNED
    assert sent_tasks == []


def test_a_campaign_started_twice_hands_each_job_to_submission_once(
    archive: Datastore,
    mappings_csv: Path,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    *_, totals = plan_json(archive, mappings_csv)
    pk = totals["campaign"]

    def committed(action: Any, *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    assert "started: 5 jobs (4 staged first)" in committed(run, "start", str(pk))
    assert "was already started" in committed(run, "start", str(pk))
    staged = set(CampaignJob.objects.filter(staged=True).values_list("pk", flat=True))
    assert sorted(p for name, p in sent_tasks if name == CAMPAIGN_STAGE) == sorted(
        staged
    )
    assert sent_tasks.count((CAMPAIGN_ADVANCE, pk)) == 1
    # Twice over, as two deliveries of the same message would: the folder job is handed over once.
    committed(accounting.campaign_advance, campaign_id=pk)
    committed(accounting.campaign_advance, campaign_id=pk)
    assert ImportJob.objects.count() == 1
    assert [name for name, _ in sent_tasks].count(JOB_SUBMIT) == 1
    # Staged jobs wait for their copies; once staged, each is handed over once too.
    CampaignJob.objects.filter(staged=True).update(state=CampaignJob.State.STAGED)
    committed(accounting.campaign_advance, campaign_id=pk)
    committed(accounting.campaign_advance, campaign_id=pk)
    assert ImportJob.objects.count() == 5
    assert [name for name, _ in sent_tasks].count(JOB_SUBMIT) == 5
    assert set(ImportJob.objects.values_list("idempotency_key", flat=True)) == {
        f"campaign-{pk}-job-{n}" for n in range(1, 6)
    }


def test_a_job_that_fails_as_a_whole_leaves_its_objects_not_imported_and_the_sum_holds(
    archive: Datastore, mappings_csv: Path, sent_tasks: list[tuple[str, int]]
) -> None:
    *_, totals = plan_json(archive, mappings_csv)
    pk = totals["campaign"]
    run("start", str(pk))
    CampaignJob.objects.filter(staged=True).update(state=CampaignJob.State.STAGED)
    accounting.campaign_advance(campaign_id=pk)
    ImportJob.objects.update(
        status=ImportJob.Status.FAILED, message="FILE_COUNTS_LIMIT_EXCEEDED"
    )
    status = json.loads(run("status", str(pk), "--wait", "--json", "--interval", "0"))
    assert status == {
        "campaign": pk,
        "state": "completed",
        "jobs": 5,
        "objects": OBJECTS,
        "imported": 0,
        "failed": 0,
        "skipped": SKIPPED,
        "not_imported": OBJECTS - SKIPPED,
        "unaccounted": 0,
    }
    reason = (
        CampaignObject.objects.filter(outcome="not_imported")
        .values_list("reason", flat=True)
        .first()
    )
    assert reason is not None
    assert "failed as a whole: FILE_COUNTS_LIMIT_EXCEEDED" in reason


def test_a_cancelled_campaign_submits_nothing_more_and_accounts_for_everything(
    archive: Datastore, mappings_csv: Path, sent_tasks: list[tuple[str, int]]
) -> None:
    *_, totals = plan_json(archive, mappings_csv)
    pk = totals["campaign"]
    run("start", str(pk))
    assert "paused" in run("pause", str(pk))
    accounting.campaign_advance(campaign_id=pk)
    assert not ImportJob.objects.exists()  # paused: nothing handed over
    with pytest.raises(CommandError, match="cannot be paused now"):
        run("pause", str(pk))
    run("resume", str(pk))
    accounting.campaign_advance(campaign_id=pk)
    assert ImportJob.objects.count() == 1
    run("cancel", str(pk))
    status = json.loads(run("status", str(pk), "--json"))
    accounting.campaign_advance(campaign_id=pk)
    status = json.loads(run("status", str(pk), "--json"))
    assert status["state"] == "cancelled"
    assert status["not_imported"] + status["skipped"] == OBJECTS
    assert status["unaccounted"] == 0
    assert ImportJob.objects.get().status == ImportJob.Status.SUBMIT_FAILED
