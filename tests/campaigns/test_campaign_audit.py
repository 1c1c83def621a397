"""Planning, starting, pausing, resuming and cancelling a campaign each leave one audit event; a refusal leaves none."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from imports.audit.records import audit_verify
from imports.campaigns import services
from imports.models import AuditEvent, Campaign, Datastore
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, OBJECTS, STAGING

pytestmark = pytest.mark.django_db

CAMPAIGN_ACTIONS = [
    AuditEvent.Action.CAMPAIGN_PLANNED,
    AuditEvent.Action.CAMPAIGN_STARTED,
    AuditEvent.Action.CAMPAIGN_PAUSED,
    AuditEvent.Action.CAMPAIGN_RESUMED,
    AuditEvent.Action.CAMPAIGN_CANCELLED,
]


def campaign_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__in=CAMPAIGN_ACTIONS).order_by("id"))


def plan(datastore: Datastore, mappings: Path, actor: User | None = None) -> Campaign:
    return services.campaign_plan(
        actor=actor,
        datastore=datastore,
        inputs=[ARCHIVE],
        mappings=[],
        max_files=4,
        staging_uri=STAGING,
    ).campaign


def test_a_plan_is_recorded_with_its_actor_counts_and_inputs(
    archive: Datastore, mappings_csv: Path, alice: User
) -> None:
    campaign = plan(archive, mappings_csv, alice)
    [event] = campaign_events()
    assert event.action == AuditEvent.Action.CAMPAIGN_PLANNED
    assert event.actor_username == "alice"
    assert (event.target_type, event.target_id) == (
        "imports.campaign",
        str(campaign.pk),
    )
    assert event.summary.startswith(
        f"Planned campaign {campaign.pk} into “{archive.name}”: "
    )
    assert f"for {OBJECTS} objects from 1 source prefix" in event.summary
    assert event.details["inputs"] == [ARCHIVE]
    assert event.details["jobs"] == campaign.jobs.count()
    assert event.details["objects"] == OBJECTS
    assert audit_verify().broken is None


def test_a_refused_plan_records_nothing(archive: Datastore) -> None:
    with pytest.raises(services.CampaignRefused):
        services.campaign_plan(
            actor=None,
            datastore=archive,
            inputs=[ARCHIVE],
            max_files=archive.max_files_per_job + 1,
        )
    assert campaign_events() == []
    assert not Campaign.objects.exists()


def test_the_command_line_records_start_pause_resume_and_cancel_as_system(
    archive: Datastore, mappings_csv: Path
) -> None:
    campaign = plan(archive, mappings_csv)
    for action in ("start", "pause", "resume", "cancel"):
        call_command("campaign", action, str(campaign.pk), stdout=StringIO())
    events = campaign_events()
    assert [(e.action, e.actor_username) for e in events] == [
        (action, "system") for action in CAMPAIGN_ACTIONS
    ]
    assert [(e.details["from"], e.details["to"]) for e in events[1:]] == [
        ("planned", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "cancelled"),
    ]
    assert [e.summary for e in events[1:]] == [
        f"Campaign {campaign.pk} {done}"
        for done in ("started", "paused", "resumed", "cancelled")
    ]


def test_a_change_refused_by_the_campaign_state_records_nothing(
    archive: Datastore, mappings_csv: Path
) -> None:
    campaign = plan(archive, mappings_csv)
    with pytest.raises(CommandError, match="cannot be paused now"):
        call_command("campaign", "pause", str(campaign.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="cannot be resumed now"):
        call_command("campaign", "resume", str(campaign.pk), stdout=StringIO())
    assert [e.action for e in campaign_events()] == [AuditEvent.Action.CAMPAIGN_PLANNED]


def test_a_start_refused_because_a_source_changed_records_nothing(
    archive: Datastore, mappings_csv: Path, localaws: LocalAWSHandle
) -> None:
    campaign = plan(archive, mappings_csv)
    localaws.put(f"{ARCHIVE}study3/late.dcm", b"added after the scan")
    with pytest.raises(services.CampaignRefused):
        services.campaign_start(actor=None, campaign_id=campaign.pk)
    assert [e.action for e in campaign_events()] == [AuditEvent.Action.CAMPAIGN_PLANNED]


def test_the_page_buttons_record_the_operator(
    archive: Datastore, mappings_csv: Path, client_alice: Client
) -> None:
    campaign = plan(archive, mappings_csv)
    client_alice.post(reverse("imports:campaign_cancel", args=[campaign.pk]))
    event = campaign_events()[-1]
    assert (event.action, event.actor_username, event.details["from"]) == (
        AuditEvent.Action.CAMPAIGN_CANCELLED,
        "alice",
        "planned",
    )
