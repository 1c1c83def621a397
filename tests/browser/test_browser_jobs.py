"""A job page in headless Chromium: the status changes without a reload, and the results appear."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User

from imports import tasks
from imports.models import Datastore
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.browser.screens import screenshot
from tests.browser.test_browser import page, sign_in  # noqa: F401 - the page fixture
from tests.builders import make_job
from tests.conftest import WorkerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

STUDY = "1.2.826.0.1.3680043.8.498.51"


def test_an_operator_watches_a_confirmed_job_change_status_without_a_reload(
    page: Any,  # noqa: F811
    localaws: LocalAWSHandle,
    celery_worker_process: WorkerProcess,
    alice: User,
    datastore: Datastore,
) -> None:
    # AWS keeps the job IN_PROGRESS for 10 s: longer than the worker's poll interval (2 s) plus a
    # loaded machine's broker latency, so the poller cannot step over that state, and the page
    # (every 2 s) sees it.
    localaws.configure(job_submitted_delay_s=2, job_in_progress_delay_s=10)
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    for i in range(3):
        localaws.put(
            f"s3://dicom-input/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=STUDY + ".1", InstanceNumber=i),
        )
    localaws.put("s3://dicom-input/incoming/misc/notes.txt", b"not DICOM")
    # Beat, as the demo runs it: the one poller every second.
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(1):
            tasks.jobs_poll.delay()

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        sign_in(page, "alice")
        # The composer's confirmation calls job_create; this test starts from that hand-off.
        job = make_job(datastore, actor=alice, job_name="ct-demo")
        page.goto(f"/jobs/{job.pk}/")
        # Every text the badge shows is recorded as htmx swaps it, so a state shown between two
        # checks of this test still counts.
        page.evaluate(
            """() => {
              window.stillTheSamePage = true;
              window.badgesSeen = [document.querySelector('#job-status-badge').innerText];
              new MutationObserver(() => {
                const badge = document.querySelector('#job-status-badge');
                if (badge) window.badgesSeen.push(badge.innerText);
              }).observe(document.body, {subtree: true, childList: true, characterData: true});
            }"""
        )
        page.wait_for_function(
            "() => document.querySelector('#job-status-badge')?.innerText"
            " === 'Completed with errors'",
            timeout=90_000,
        )
        seen = set(page.evaluate("window.badgesSeen"))
        page.wait_for_selector(
            "#job-files >> text=incoming/misc/notes.txt", timeout=30_000
        )
        assert page.evaluate("window.stillTheSamePage") is True
        assert {"In progress", "Completed with errors"} <= seen
        assert "DICOM attribute TransferSyntaxUID does not exist" in page.inner_text(
            "#job-results"
        )
        # The verification card, polled on its own, says so once the worker has read the image set's metadata.
        page.wait_for_function(
            "() => document.querySelector('#verification-sentence')?.innerText"
            ".startsWith('Overrides verified: 0 of 0 attributes in 1 image set')",
            timeout=60_000,
        )
        assert page.evaluate("window.stillTheSamePage") is True
        assert page.console_errors == []
        screenshot(page, "job")
    finally:
        stop.set()
        ticker.join()
