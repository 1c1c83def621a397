"""The campaign pages: the list, the detail with its progress bar, and pause/resume/cancel for operators only."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from imports.models import Campaign, Datastore
from tests.campaigns.conftest import ARCHIVE, STAGING

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(archive: Datastore, mappings_csv: Path) -> Campaign:
    call_command(
        "campaign", "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING, stdout=StringIO(),
    )  # fmt: skip
    return Campaign.objects.get()


def test_the_list_names_each_campaign_in_a_bounded_number_of_queries(
    client_bob: Client, campaign: Campaign, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(8):
        page = client_bob.get(reverse("imports:campaign_list"))
    assert page.status_code == 200
    assert f"Campaign {campaign.pk}</a>" in page.content.decode()


def test_the_detail_shows_progress_and_jobs_and_offers_operators_the_buttons(
    client_alice: Client,
    client_bob: Client,
    campaign: Campaign,
    django_assert_max_num_queries: Any,
) -> None:
    url = reverse("imports:campaign_detail", args=[campaign.pk])
    with django_assert_max_num_queries(16):
        page = client_alice.get(url).content.decode()
    assert 'aria-label="Objects accounted for"' in page
    assert "2 skipped" in page  # the readme and the metadata file, known at planning
    assert page.count('<td class="num">') >= 5 * 4
    assert "Cancel campaign" in page
    viewer = client_bob.get(url).content.decode()
    assert "Cancel campaign" not in viewer
    assert "Objects accounted for" in viewer


def test_pause_resume_and_cancel_are_for_operators(
    client_alice: Client, client_bob: Client, campaign: Campaign
) -> None:
    cancel = reverse("imports:campaign_cancel", args=[campaign.pk])
    assert client_bob.post(cancel).status_code == 403
    assert Campaign.objects.get().state == Campaign.State.PLANNED
    pause = reverse("imports:campaign_pause", args=[campaign.pk])
    refused = client_alice.post(pause, follow=True).content.decode()
    assert "is planned: it cannot be paused now" in refused
    client_alice.post(cancel)
    assert Campaign.objects.get().state == Campaign.State.CANCELLED


def test_the_progress_fragment_stops_polling_once_the_campaign_has_ended(
    client_bob: Client, campaign: Campaign
) -> None:
    url = reverse("imports:campaign_progress", args=[campaign.pk])
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    running = client_bob.get(url, headers={"HX-Request": "true"})
    assert running.status_code == 200
    assert 'hx-trigger="every 2s"' in running.content.decode()
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.COMPLETED, ended_at="2026-12-03T12:00:00Z"
    )
    assert client_bob.get(url, headers={"HX-Request": "true"}).status_code == 286


def test_someone_in_no_role_sees_no_campaign(nobody: Any, campaign: Campaign) -> None:
    client = Client()
    client.force_login(nobody)
    assert client.get(reverse("imports:campaign_list")).status_code == 403
    assert (
        client.get(reverse("imports:campaign_detail", args=[campaign.pk])).status_code
        == 403
    )
