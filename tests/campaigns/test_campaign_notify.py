"""The email when a campaign ends: sent once, to its creator, with counts and a link and nothing from the archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from imports.campaigns import accounting
from imports.enqueue import CAMPAIGN_NOTIFY
from imports.models import Campaign, CampaignJob, Datastore, ImportJob
from tests.campaigns.conftest import ARCHIVE, OBJECTS, SKIPPED, STUDY1
from tests.campaigns.test_campaign_command import plan_json, run

pytestmark = pytest.mark.django_db


def _ended_campaign(
    archive: Datastore, mappings_csv: Path, creator: User | None, on_commit: Any
) -> int:
    *_, totals = plan_json(archive, mappings_csv)
    pk = int(totals["campaign"])
    Campaign.objects.filter(pk=pk).update(created_by=creator)
    run("start", str(pk))
    CampaignJob.objects.filter(staged=True).update(state=CampaignJob.State.STAGED)
    accounting.campaign_advance(campaign_id=pk)
    ImportJob.objects.update(
        status=ImportJob.Status.FAILED, message="FILE_COUNTS_LIMIT_EXCEEDED"
    )
    with on_commit(execute=True):
        status = json.loads(
            run("status", str(pk), "--wait", "--json", "--interval", "0")
        )
    assert status["state"] == "completed"
    return pk


def test_the_creator_is_told_once_when_the_campaign_ends(
    archive: Datastore,
    mappings_csv: Path,
    sent_tasks: list[tuple[str, int]],
    mailoutbox: list[Any],
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice.email = "alice@hospital.example"
    alice.save()
    pk = _ended_campaign(
        archive, mappings_csv, alice, django_capture_on_commit_callbacks
    )
    assert sent_tasks.count((CAMPAIGN_NOTIFY, pk)) == 1
    assert accounting.campaign_notify(campaign_id=pk) is True
    assert accounting.campaign_notify(campaign_id=pk) is False
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@hospital.example"]
    assert mail.subject == f"Campaign {pk}: Completed"
    assert (
        f"imported 0, failed 0, skipped {SKIPPED}, not imported {OBJECTS - SKIPPED}, "
        "not accounted for 0" in mail.body
    )
    assert f"/campaigns/{pk}/" in mail.body
    # Nothing from the archive leaves the dashboard: no prefix, no key, no UID.
    assert ARCHIVE not in mail.body
    assert ARCHIVE.split("/")[2] not in mail.body
    assert STUDY1 not in mail.body
    assert Campaign.objects.get(pk=pk).notified_at is not None


def test_no_email_for_a_campaign_still_running_or_a_creator_without_an_address(
    archive: Datastore,
    mappings_csv: Path,
    sent_tasks: list[tuple[str, int]],
    mailoutbox: list[Any],
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    *_, totals = plan_json(archive, mappings_csv)
    running = int(totals["campaign"])
    Campaign.objects.filter(pk=running).update(created_by=alice)
    alice.email = "alice@hospital.example"
    alice.save()
    run("start", str(running))
    assert accounting.campaign_notify(campaign_id=running) is False
    assert (CAMPAIGN_NOTIFY, running) not in sent_tasks
    alice.email = ""
    alice.save()
    ended = _ended_campaign(
        archive, mappings_csv, alice, django_capture_on_commit_callbacks
    )
    assert (CAMPAIGN_NOTIFY, ended) in sent_tasks
    assert accounting.campaign_notify(campaign_id=ended) is False
    assert mailoutbox == []
