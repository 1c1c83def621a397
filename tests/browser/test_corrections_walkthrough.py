"""Issue 19's "Done when", walked in the browser on the demo data, with a real worker and beat's poller.

An operator uploads a sheet that corrects two studies' PatientID by accession number and merges Jane's two
studies into another PatientID. They see the diff (patient values masked), write and map it; an administrator
approves the patient changes in a tab of their own; the operator confirms, the job ends, and the corrected
PatientIDs are in the image sets' stored metadata.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from imports.drafts import services as drafts
from imports.models import Datastore, ImportJob
from imports.scanning import control, run
from localaws import democorpus
from localaws.testing import LocalAWSHandle
from tests.browser.screens import screenshot
from tests.browser.test_browser import page, sign_in  # noqa: F401 - the page fixture
from tests.browser.test_journey import (
    another_tab,
    beat,  # noqa: F401 - the poller fixture
)
from tests.conftest import WorkerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

ENDED = ("Completed", "Completed with errors")
KNEE_ID, BRAIN_ID, JANE_ID = "DEMO0033", "DEMO0022", "DEMO0011"


def _wait_for(condition: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds:g} s for {what}")


def test_on_the_demo_data_a_sheet_is_reviewed_written_mapped_approved_and_imported(
    page: Any,  # noqa: F811
    localaws: LocalAWSHandle,
    celery_worker_process: WorkerProcess,
    beat: None,  # noqa: F811
    tmp_path: Path,
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    knee = democorpus.study_by_key("mr-knee")
    brain = democorpus.study_by_key("mr-brain")
    jane = [democorpus.study_by_key("ct-chest"), democorpus.study_by_key("cr-chest")]
    assert {s.patient for s in jane} == {democorpus.JANE}
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    run.scan_run(scan_id=scan.pk)
    draft = drafts.draft_start(
        actor=None,
        datastore=datastore,
        input_s3_uri=democorpus.INPUT_S3_URI,
        output_s3_uri=democorpus.OUTPUT_S3_URI,
    )
    sheet = tmp_path / "reconciliation.csv"
    sheet.write_text(
        'AccessionNumber,PatientID,Scope,"(0010,0020)"\n'
        f"{knee.accession},,,{KNEE_ID}\n"
        f"{brain.accession},,,{BRAIN_ID}\n"
        f",{democorpus.JANE.id},patient,{JANE_ID}\n",
        encoding="utf-8",
    )

    # The operator uploads the sheet and sees the diff, patient values masked.
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{draft.pk}/")
    page.set_input_files("#corrections-sheet", str(sheet))
    page.click("text=Review the sheet")
    page.wait_for_selector("#corrections-diff")
    summary = page.inner_text("#corrections-summary")
    assert "4 studies of 3 patients" in summary
    assert "1 patient-identifying" in summary
    diff = page.inner_text("#corrections-diff")
    assert "patient merge, 2 studies" in diff
    for study in (knee, brain, *jane):
        assert democorpus.study_uid(study) in diff
    for hidden in (KNEE_ID, BRAIN_ID, JANE_ID, democorpus.JANE.id):
        assert hidden not in diff
    screenshot(page, "corrections-diff")

    # Write and map: four files, each mapped into the draft.
    page.click("#corrections-write button")
    page.wait_for_selector("text=mapped them into the draft")
    mapped = dict(
        draft.mappings.values_list("study_instance_uid", "metadata_file_path")
    )
    assert set(mapped) == {democorpus.study_uid(s) for s in (knee, brain, *jane)}
    assert all(p.startswith("metadata/corrections/") for p in mapped.values())

    # A second person approves the PatientID changes.
    admin = another_tab(page)
    sign_in(admin, "admin", "admin-demo")
    admin.goto(f"/drafts/{draft.pk}/")
    admin.wait_for_selector("#approval-form")
    assert "PatientID" in admin.inner_text("#approval")
    admin.select_option("#approval-form select[name=reason]", "merge")
    admin.fill("#approval-form [name=note]", "MRN reconciliation from the RIS")
    admin.click("#approval-form button[value=approve]")
    admin.wait_for_selector("#approval-status >> text=Approved by")
    assert admin.console_errors == []
    admin.context.close()

    # The operator confirms; the job runs on the worker to its end.
    page.click("text=Review and confirm")
    page.wait_for_selector("text=Confirm the import")
    assert page.locator("#approval-needed").count() == 0
    if page.locator("input[name=acknowledge_warnings]").count():
        page.check("input[name=acknowledge_warnings]")
    if page.locator("input[name=accept_non_primary]").count():
        page.check("input[name=accept_non_primary]")
    page.click("text=Confirm the import")
    page.wait_for_selector("text=Its status below follows it to HealthImaging")
    page.wait_for_function(
        "ended => ended.includes(document.querySelector('#job-status-badge')?.innerText)",
        arg=list(ENDED),
        timeout=120_000,
    )
    job = ImportJob.objects.get(draft=draft)
    _wait_for(lambda: ImportJob.objects.get(pk=job.pk).has_ended, "the import")

    # The corrected PatientIDs, in the stored metadata of every image set of the corrected studies.
    expected = {
        democorpus.study_uid(knee): KNEE_ID,
        democorpus.study_uid(brain): BRAIN_ID,
        **{democorpus.study_uid(s): JANE_ID for s in jane},
    }
    stored: dict[str, set[str]] = {}
    for image_set in localaws.image_sets(datastore.datastore_id):
        if image_set["studyInstanceUID"] in expected:
            stored.setdefault(image_set["studyInstanceUID"], set()).update(
                image_set["metadata"]["00100020"]["Value"]
            )
    assert stored == {study: {patient} for study, patient in expected.items()}
    assert page.console_errors == []
