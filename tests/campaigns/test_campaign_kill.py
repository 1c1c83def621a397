"""A worker process killed with SIGKILL in the middle of a campaign job's staging: the message comes back (acks
late, rejected on a lost worker), the copies already made are not made again, and the job ends up staged."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs; a dependency of locust (requirements-dev)
import pytest
from django.core.management import call_command

from imports.campaigns import services
from imports.models import Campaign, CampaignCopy, CampaignJob, Datastore
from localaws.server import LocalAWS
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, STAGING
from tests.conftest import (
    WorkerProcess,
    session_worker_paused,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_process_worker(
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    localaws_server: LocalAWS,
) -> Iterator[WorkerProcess]:
    # Only this worker takes the app's queues while it runs (tests/conftest.py says why).
    with session_worker_paused():
        # One pool process, so the one to kill is the one staging.
        worker = start_celery_worker(
            django_db_blocker,
            tmp_path_factory,
            localaws_server,
            pool=("-P", "prefork", "--concurrency", "1"),
        )
        yield worker
        stop_celery_worker(worker)


def test_a_worker_killed_mid_staging_leaves_every_copy_made_once_and_the_job_staged(
    archive: Datastore,
    mappings_csv: Path,
    localaws: LocalAWSHandle,
    one_process_worker: WorkerProcess,
) -> None:
    call_command(
        "campaign", "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING, stdout=StringIO(),
    )  # fmt: skip
    campaign = Campaign.objects.get()
    # Job 3 stages its series folder and the study file it maps (test_staging says which copies).
    staged = CampaignJob.objects.get(campaign=campaign, number=3)
    copies = staged.copies.count()
    assert copies >= 3
    # Each S3 request takes 0.8 s: the staging lasts long enough to be interrupted between two copies.
    localaws.add_fault(service="s3", latency_ms=800)
    localaws.clear_calls()
    assert services.campaign_start(actor=None, campaign_id=campaign.pk)

    def some_copied() -> bool:
        made = staged.copies.filter(status=CampaignCopy.Status.COPIED).count()
        return 1 <= made < copies

    wait_for(some_copied, timeout=60, what="the staging to be half done")
    (child,) = psutil.Process(one_process_worker.process.pid).children()
    os.kill(child.pid, signal.SIGKILL)

    def staged_by_now() -> bool:
        staged.refresh_from_db()
        return staged.state != CampaignJob.State.STAGING

    wait_for(
        staged_by_now,
        timeout=90,
        what=f"the staging to resume after the kill; worker log:\n{one_process_worker.output()[-3000:]}",
    )
    # Staged, and perhaps handed to submission already (a fast broker gets there first).
    assert staged.state in (CampaignJob.State.STAGED, CampaignJob.State.SUBMITTED), (
        staged.error
    )
    # A new pool process did it: the killed one is gone.
    assert child.pid not in {
        p.pid for p in psutil.Process(one_process_worker.process.pid).children()
    }
    assert set(staged.copies.values_list("status", flat=True)) == {"copied"}

    # Every staged job of the campaign: each copy made before the kill was not made again, only the one in
    # flight may have been.
    def all_staged() -> bool:
        return not CampaignJob.objects.filter(
            campaign=campaign, state=CampaignJob.State.STAGING
        ).exists()

    wait_for(all_staged, timeout=90, what="every staged job to be staged")
    every_copy = CampaignCopy.objects.filter(job__campaign=campaign)
    assert set(every_copy.values_list("status", flat=True)) == {"copied"}
    calls = len(localaws.calls("s3", "CopyObject"))
    assert every_copy.count() <= calls <= every_copy.count() + 1
    listed = localaws.s3_client().list_objects_v2(
        Bucket="staging", Prefix=f"campaigns/{campaign.pk}/{staged.number}/"
    )
    assert len(listed["Contents"]) == copies
