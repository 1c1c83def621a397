"""Issue 18's "Done when", walked in the browser on the demo data, with a real worker and beat's poller.

The demo prefix was imported once already. An operator composes a second import of it and writes, in the
editor, a series file that gives one series another PatientID: the confirmation page predicts a non-primary
image set for that series and names PatientID; an administrator approves the patient change (four eyes); once the
fork is accepted and the job has ended, the job page
says the prediction was confirmed and every override verified, and the signed record downloaded from it is
accepted by `import_record verify`, then refused once a field is edited.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from imports.drafts import services as drafts
from imports.jobs import request as jobrequest
from imports.jobs import submit as jobs
from imports.mappings.rules import Mapping
from imports.models import Datastore, ImportJob, ScanSeries
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
OTHER_PATIENT_ID = "DEMO0999"


def _wait_for(condition: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds:g} s for {what}")


def _verify(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("import_record", "verify", str(path), stdout=out, stderr=err)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_on_the_demo_data_a_patient_id_conflict_is_predicted_then_verified_and_signed(
    page: Any,  # noqa: F811
    localaws: LocalAWSHandle,
    celery_worker_process: WorkerProcess,
    beat: None,  # noqa: F811
    tmp_path: Path,
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    # Already imported: the demo prefix, by an earlier job (on the worker, as the dashboard submits).
    chest = democorpus.study_by_key("ct-chest")
    brain = democorpus.study_by_key("mr-brain")
    earlier = jobs.job_create(
        actor=None,
        draft=None,
        datastore=datastore,
        request=jobrequest.job_request_build(
            datastore=datastore,
            mappings=[
                Mapping(democorpus.study_uid(chest), "", democorpus.STUDY_METADATA_FILE)
            ],
        ),
        idempotency_key="earlier-import",
    )
    _wait_for(
        lambda: ImportJob.objects.get(pk=earlier.pk).has_ended, "the earlier import"
    )
    assert localaws.image_sets(datastore.datastore_id)

    series_uid = democorpus.series_uid(brain, brain.series[0])
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    run.scan_run(scan_id=scan.pk)
    assert ScanSeries.objects.filter(
        study__scan=scan, series_instance_uid=series_uid
    ).exists()
    draft = drafts.draft_start(
        actor=None,
        datastore=datastore,
        input_s3_uri=democorpus.INPUT_S3_URI,
        output_s3_uri=democorpus.OUTPUT_S3_URI,
    )

    # The operator maps the demo's files as the earlier import did, then writes a series file in the editor:
    # another PatientID for one series of John's MR.
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{draft.pk}/")
    page.wait_for_selector("#suggestions")
    page.click("text=Accept all suggestions")
    page.wait_for_selector("#mappings >> text=metadata/series-mr-brain-t2.json")
    page.click(f"a[href*='series={series_uid}']:has-text('Write a series file')")
    page.wait_for_selector("input[id^='rows-'][id$='-tag']")
    row = next(
        n
        for n in range(20)
        if page.locator(f"#rows-{n}-tag").count()
        and not page.input_value(f"#rows-{n}-tag")
    )
    page.click(f"#rows-{row}-tag")
    page.keyboard.type("PatientID")
    page.wait_for_selector(f"#row-{row}-check >> text=Patient ID")
    page.click(f"#rows-{row}-value")
    page.keyboard.type(OTHER_PATIENT_ID)
    page.wait_for_selector("#editor-status >> text=every row is valid")
    page.click("button[value=save]")
    page.wait_for_selector(f"#mappings >> text=metadata/{series_uid}.json")

    # The confirmation: that series would fork, because of PatientID (masked until revealed).
    page.click("text=Review and confirm")
    page.wait_for_selector("#non-primary-series")
    forks = page.inner_text("#non-primary-series")
    assert series_uid in forks
    assert "PatientID" in forks
    assert OTHER_PATIENT_ID not in forks
    assert "1 non-primary" in page.inner_text("main")
    screenshot(page, "prediction-non-primary")
    # A PatientID is patient data: a second person approves this version first (issue 19's four eyes).
    assert page.is_visible("#approval-needed")
    admin = another_tab(page)
    sign_in(admin, "admin", "admin-demo")
    admin.goto(f"/drafts/{draft.pk}/")
    admin.wait_for_selector("#approval-form")
    assert "PatientID" in admin.inner_text("#approval")
    admin.select_option("#approval-form select[name=reason]", "correction")
    admin.fill("#approval-form [name=note]", "MRN corrected by the RIS")
    admin.click("#approval-form button[value=approve]")
    admin.wait_for_selector("#approval-status >> text=Approved by")
    screenshot(admin, "approval")
    admin.context.close()
    page.reload()
    page.wait_for_selector("#non-primary-series")
    assert page.locator("#approval-needed").count() == 0
    if page.locator("input[name=acknowledge_warnings]").count():
        page.check("input[name=acknowledge_warnings]")
    page.check("input[name=accept_non_primary]")
    page.click("text=Confirm the import")
    page.wait_for_selector("text=Its status below follows it to HealthImaging")

    # After the job: the prediction confirmed, every override verified (the card follows by itself).
    page.wait_for_function(
        "ended => ended.includes(document.querySelector('#job-status-badge')?.innerText)",
        arg=list(ENDED),
        timeout=120_000,
    )
    page.wait_for_selector(
        "#verification-sentence >> text=Overrides verified", timeout=120_000
    )
    job = ImportJob.objects.get(draft=draft)
    assert job.verification == ImportJob.Verification.VERIFIED
    # N of N: the chest study's description in each of its image sets, the T2 series' description and the
    # new PatientID in the forked set, each found where it belongs.
    sentence = page.inner_text("#verification-sentence")
    verified = re.fullmatch(
        r"Overrides verified: (\d+) of \1 attributes in (\d+) image sets", sentence
    )
    assert verified, sentence
    assert int(verified.group(1)) >= 3
    page.reload()
    assert page.is_visible("#prediction-outcome >> text=prediction confirmed")
    assert "approved by admin" in page.inner_text("#job-approval")
    forked = [
        s
        for s in localaws.image_sets(datastore.datastore_id)
        if s["seriesInstanceUID"] == series_uid and not s["isPrimary"]
    ]
    assert len(forked) == 1
    screenshot(page, "prediction-verified")

    # The signed record, downloaded from the job page: intact, then refused once edited.
    with page.expect_download() as download:
        page.click("#record-download")
    path = tmp_path / "record.json"
    download.value.save_as(path)
    code, out, _ = _verify(path)
    assert (code, "intact" in out) == (0, True)
    document = json.loads(path.read_text())
    assert document["prediction"]["confirmed"] is True
    assert document["verification"]["state"] == "verified"
    assert document["approval"]["approver"] == "admin"
    assert document["approval"]["reason"] == "correction"
    document["submitter"] = "someone-else"
    path.write_text(json.dumps(document))
    code, out, err = _verify(path)
    assert code == 1
    assert "submitter" in out + err
    assert page.console_errors == []
