"""The whole journey on the demo data, as the three roles would walk it, with a real worker and beat's poller.

The administrator checks the datastore in the admin site; the operator browses, scans on the worker, composes,
previews, confirms and watches the job end; the viewer opens the same job with patient values masked and cannot
act on it; the administrator finds the operator's steps in the audit trail. Each main screen is saved in the
order an administrator works (tests/browser/screens.py says where).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from imports import tasks
from imports.models import AuditEvent, ImportJob
from localaws import democorpus
from localaws.testing import LocalAWSHandle
from tests.browser.screens import screenshot
from tests.browser.test_browser import page, sign_in  # noqa: F401 - the page fixture
from tests.conftest import WorkerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

ENDED = ("Completed", "Completed with errors")


@pytest.fixture
def beat() -> Iterator[None]:
    """Beat's one poller, every second, as the demo runs it (the worker does the polling)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1):
            tasks.jobs_poll.delay()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield
    stop.set()
    ticker.join()


def another_tab(first: Any) -> Any:
    """A tab in a browser context of its own: another person, with their own session cookie."""
    context = first.context.browser.new_context(
        viewport={"width": 1366, "height": 768},
        base_url=first.evaluate("location.origin"),
    )
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.console_errors = errors
    return tab


def test_the_whole_journey_as_administrator_operator_and_viewer(
    page: Any,  # noqa: F811
    localaws: LocalAWSHandle,
    celery_worker_process: WorkerProcess,
    beat: None,
) -> None:
    call_command("seed_demo", stdout=io.StringIO())

    # The administrator: the datastore in the admin site, checked against AWS.
    admin = page
    sign_in(admin, "admin", "admin-demo")
    admin.goto("/admin/imports/datastore/")
    admin.check("input[name=_selected_action]")
    admin.select_option("select[name=action]", "check_connection")
    admin.click("button[name=index]")
    assert "is ACTIVE" in admin.inner_text("ul.messagelist")
    screenshot(admin, "01-admin-datastores")

    # The operator: the dashboard, the prefix, a scan on the worker.
    operator = another_tab(page)
    sign_in(operator, "operator", "operator-demo")
    screenshot(operator, "02-dashboard")
    operator.click("nav >> text=Browse")
    operator.wait_for_selector("#listing >> text=metadata/")
    screenshot(operator, "03-browse")
    operator.click("text=Scan this prefix")
    operator.wait_for_selector("text=Studies and series", timeout=90_000)
    assert operator.is_visible("#scan-progress >> text=Completed")
    assert "Doe" not in operator.inner_text("#studies")
    screenshot(operator, "04-scan")

    # Composed from the scan: the suggested study and series files, then previewed and confirmed.
    operator.click("text=New import from this scan")
    operator.wait_for_selector("#suggestions")
    operator.click("text=Accept all suggestions")
    operator.wait_for_selector("#mappings >> text=metadata/series-mr-brain-t2.json")
    assert operator.locator("#mappings .badge.ok").count() == 2
    screenshot(operator, "05-composer")
    operator.click("text=Preview headers")
    operator.wait_for_selector("#series-choice")
    operator.click("form >> text=Show")
    operator.wait_for_selector("table.across")
    assert "Doe" not in operator.inner_text("#preview")
    screenshot(operator, "06-preview")
    operator.click("text=Review and confirm")
    assert '"metadataFilePath": "metadata/study-ct-chest.json"' in operator.inner_text(
        "#request-json"
    )
    if operator.locator("input[name=acknowledge_warnings]").count():
        operator.check("input[name=acknowledge_warnings]")
    screenshot(operator, "07-confirmation")
    operator.click("text=Confirm the import")
    operator.wait_for_selector("text=Its status below follows it to HealthImaging")
    job_url = operator.url
    # The worker submits it, beat's poller follows it at AWS, and the page follows the database.
    operator.wait_for_function(
        "ended => ended.includes(document.querySelector('#job-status-badge')?.innerText)",
        arg=list(ENDED),
        timeout=120_000,
    )
    job = ImportJob.objects.get()
    assert job.aws_job_id
    # The per-file results, read from the job's output folder by the worker, appear without a reload.
    operator.wait_for_selector("#job-files", timeout=60_000)
    screenshot(operator, "08-job")
    operator.click("nav >> text=Jobs")
    operator.wait_for_selector(f"text={job.job_name}")
    screenshot(operator, "09-history")

    # The viewer: the same job, read-only, with no patient value on the page.
    viewer = another_tab(page)
    sign_in(viewer, "viewer", "viewer-demo")
    viewer.goto(job_url)
    viewer.wait_for_selector("#job-status-badge")
    assert viewer.inner_text("#job-status-badge") in ENDED
    text = viewer.inner_text("main")
    for patient in (democorpus.JANE, democorpus.JOHN, democorpus.MARIA):
        # The IDs also stand in the demo's keys (incoming/DEMO0001/…): masked there too.
        assert patient.id not in text, patient.id
        assert patient.name.split("^")[0] not in text
    assert viewer.locator("button:has-text('Retry failed files')").count() == 0
    screenshot(viewer, "10-job-as-viewer")

    # The administrator: the operator's steps, in the audit trail.
    admin.goto("/audit/")
    trail = admin.inner_text("main")
    assert "Import job confirmed" in trail
    assert "Scan started" in trail
    recorded = set(
        AuditEvent.objects.filter(actor_username="operator").values_list(
            "action", flat=True
        )
    )
    wanted = {
        AuditEvent.Action.SCAN_STARTED,
        AuditEvent.Action.DRAFT_CREATED,
        AuditEvent.Action.JOB_CREATED,
    }
    assert wanted <= recorded, recorded
    screenshot(admin, "11-audit")

    for tab in (admin, operator, viewer):
        assert tab.console_errors == [], tab.console_errors
    operator.context.close()
    viewer.context.close()
