"""A campaign from the browser, on the demo data, with a real worker: an operator plans the demo prefix into
several jobs, starts it and watches it to its end; every object is accounted for, and HealthImaging was asked for
exactly as many jobs as were planned."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command

from imports import tasks
from imports.models import Campaign, CampaignObject, Datastore, ImportJob
from imports.roles import sync_role_groups
from imports.scanning import control, run
from localaws import democorpus
from localaws.testing import LocalAWSHandle
from tests.browser.screens import screenshot
from tests.browser.test_browser import (  # noqa: F401 - the page fixture
    expect_refusals,
    page,
    sign_in,
)
from tests.conftest import WorkerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

# Low enough that the demo prefix (309 objects) cannot be one job: its patients' folders become jobs, and the
# patient with two large studies is cut into one job a study.
MAX_FILES = 120


@pytest.fixture
def beat() -> Iterator[None]:
    """Beat's poller and campaign advance, every second (the worker runs them)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1):
            tasks.jobs_poll.delay()
            tasks.campaigns_advance.delay()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield
    stop.set()
    ticker.join()


def test_an_operator_plans_starts_and_watches_a_campaign_to_its_end(
    page: Any,  # noqa: F811
    localaws: LocalAWSHandle,
    celery_worker_process: WorkerProcess,
    beat: None,
) -> None:
    # An earlier transactional test's flush erased the role groups the migration made.
    sync_role_groups(apps)
    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    assert run.scan_run(scan_id=scan.pk) is not None
    objects = len(democorpus.build_corpus())

    sign_in(page, "operator", "operator-demo")
    page.click("nav >> text=Campaigns")
    page.select_option("#id_datastore", str(datastore.pk))
    page.fill("#id_inputs", democorpus.INPUT_S3_URI)
    # Above the datastore's quota first: refused on its field, nothing stored.
    page.fill("#id_max_files", str(datastore.max_files_per_job + 1))
    expect_refusals(page, 400)
    page.click("button >> text=Plan")
    assert "give 1 to" in page.inner_text("#id_max_files_error")
    assert not Campaign.objects.exists()
    page.fill("#id_max_files", str(MAX_FILES))
    page.click("button >> text=Plan")
    page.wait_for_selector("#campaign-plan")
    campaign = Campaign.objects.get()
    planned = campaign.jobs.count()
    assert planned >= 3
    plan = page.inner_text("#campaign-plan")
    assert f"The plan: {planned} jobs for {objects} objects" in plan
    screenshot(page, "12-campaign-plan")

    page.click("text=Start campaign")
    page.wait_for_selector(f"text=Campaign {campaign.pk} started")
    # The progress card polls Django while the worker stages, submits and accounts; it stops once it has ended.
    page.wait_for_selector(
        "#campaign-progress .badge >> text=Completed", timeout=180_000
    )
    assert "100% of" in page.inner_text("#campaign-progress")
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.COMPLETED
    outcomes = list(
        CampaignObject.objects.filter(campaign=campaign).values_list(
            "outcome", flat=True
        )
    )
    assert len(outcomes) == objects
    assert CampaignObject.Outcome.PENDING not in outcomes
    assert outcomes.count(CampaignObject.Outcome.IMPORTED) > 0
    # As many AWS jobs as planned, none twice.
    started = localaws.calls("medical-imaging", "StartDICOMImportJob")
    assert len(started) == planned
    assert ImportJob.objects.filter(campaign_job__campaign=campaign).count() == planned
    page.reload()
    page.wait_for_selector("#campaign-objects")
    screenshot(page, "13-campaign")

    # The export lists every object once, as the page counts them.
    with page.expect_download() as download:
        page.click("#campaign-objects >> text=CSV")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert len(rows) == objects
    assert {r["outcome"] for r in rows} <= {"imported", "failed", "skipped"}
